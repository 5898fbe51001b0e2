"""The zoo: one module per family of the notes; importing them fills the registry."""
from . import lenet, resnet  # noqa: F401
from . import densenet, highway  # noqa: F401
from . import alexnet, nin, vgg  # noqa: F401
from . import inception  # noqa: F401
from . import efficientnet, mobilenet, shufflenet, squeezenet  # noqa: F401
from . import cbam, nonlocal_resnet, residual_attention, resnest, senet  # noqa: F401
from . import convnext, mixer, nfnet, vit  # noqa: F401
from . import adaptive, capsnet, mcdnn, odenet, stn, xnor  # noqa: F401
