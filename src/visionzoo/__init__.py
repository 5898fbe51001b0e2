"""visionzoo: the classic vision networks of the notes, trainable, measurable and explainable.

    import visionzoo as vz
    model = vz.create_model("resnet18")
    vz.count_macs(model, (3, 224, 224))
"""
from .compress import fileformat as _vzc_reader  # noqa: F401  (lets load_checkpoint read .vzc files)
from .core.profile import count_macs, count_params
from .registry import convert_state_dict, create_model, list_models, model_card, register_model

__all__ = ["list_models", "create_model", "model_card", "count_params", "count_macs",
           "convert_state_dict", "register_model"]
__version__ = "0.1.0"
