"""`--act prelu` learns one set of slopes per layer (He et al., ICCV 2015, Sec. 2.1): in every
classifier of the zoo, each rectifier is a module of its own, applied once per call of the module
that owns it, and the slopes of different layers are different parameters.

Parametrised by name only: networks are built inside the tests, so collecting costs nothing.
"""
from collections import Counter

import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.core.errors import UsageError
from visionzoo.layers.activation import activation_sites, swap_activation
from visionzoo.registry import get_entry, parse_figure

CLASSIFIERS = vz.list_models(task="classification")
# Networks over a GMAC by their paper's figure are slow here (tests/test_zoo.py's rule), except one
# of each block whose rectifiers were split: post-activation basic and bottleneck, ResNeSt, NF.
MAC_LIMIT = 1e9
FAST_ANYWAY = {"resnet18", "resnet50", "resnest50d", "nf_resnet50", "nfnet_f0"}
# The dynamics f(h, t) of a neural ODE is one function evaluated at every solver step: its layers
# are called once per evaluation of f, many times per forward, by definition.
REPEATED_BY_DESIGN = {"odenet_mnist"}
SIZE = 28


def prelu_network(name: str) -> nn.Module | None:
    """`name` at 28×28 grey with every activation a PReLU (channel-wise, or one slope per layer
    where a layer acts on token sequences); None for networks whose activations are all calls."""
    torch.manual_seed(0)
    model = vz.create_model(name, num_classes=10, in_chans=1, image_size=SIZE)
    if not activation_sites(model):
        return None
    try:
        swap_activation(model, "prelu", (1, SIZE, SIZE))
    except UsageError as error:
        assert "prelu_shared" in str(error)
        swap_activation(model, "prelu_shared", (1, SIZE, SIZE))
    return model


def calls_in_one_forward(model: nn.Module) -> Counter:
    calls = Counter()
    handles = [m.register_forward_hook(lambda m, args, out: calls.update([m])) for m in model.modules()]
    try:
        with torch.no_grad():
            model.train()(torch.randn(2, 1, SIZE, SIZE))  # training mode: auxiliary heads run too
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _slow(name: str) -> bool:
    figure = parse_figure(get_entry(name).paper_macs)
    return name not in FAST_ANYWAY and figure is not None and figure[0] > MAC_LIMIT


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if _slow(n) else n for n in CLASSIFIERS])
def test_every_rectifier_is_its_own_prelu(name):
    model = prelu_network(name)
    if model is None:
        pytest.skip(f"{name} writes its activations as function calls: no module to swap")
    assert not any(isinstance(m, (nn.ReLU, nn.GELU, nn.SiLU, nn.ELU, nn.ReLU6)) for m in model.modules())
    prelus = [m for m in model.modules() if isinstance(m, nn.PReLU)]
    calls = calls_in_one_forward(model)
    applied = {m: calls[m] for m in prelus if calls[m]}
    assert applied, f"{name}: no PReLU ran"
    if name in REPEATED_BY_DESIGN:
        owners = {id(m): owner for owner in model.modules() for m in owner.children()}
        for prelu, count in applied.items():  # once per call of the function that owns it
            assert count == calls[owners[id(prelu)]], f"{name}: a PReLU is applied twice per call of its owner"
    else:
        reused = {n: calls[m] for n, m in model.named_modules() if isinstance(m, nn.PReLU) and calls[m] > 1}
        assert not reused, f"{name}: PReLU modules applied more than once in one forward: {reused}"
        assert len(applied) == sum(applied.values())
    slopes = [m.weight for m in prelus]
    assert len({s.data_ptr() for s in slopes}) == len(slopes)  # no two layers share a slope tensor


def test_resnet18_has_one_prelu_per_rectifier_each_learning_its_own_slopes():
    model = prelu_network("resnet18")
    prelus = [m for m in model.modules() if isinstance(m, nn.PReLU)]
    assert len(prelus) == 17  # the stem's and two per basic block: 1 + 8 × 2
    block = model.layer1[0]
    assert block.relu1 is not block.relu and block.relu1.weight is not block.relu.weight
    optimizer = torch.optim.SGD([m.weight for m in prelus], lr=0.1)
    model.train()(torch.randn(4, 1, SIZE, SIZE)).logsumexp(1).mean().backward()
    optimizer.step()
    assert not torch.equal(block.relu1.weight, block.relu.weight)  # both started at 0.25


def test_state_dict_keys_of_the_relu_networks_are_unchanged():
    """Rectifiers have no parameters: one module per use adds no key, so torchvision weights still load."""
    from torchvision.models import resnet50
    ours = vz.create_model("resnet50")
    assert list(ours.state_dict()) == list(resnet50().state_dict())
