"""Transfer learning: start from trained weights, replace the head, train all or only the head.

As in the notes (transfer learning with convolutional networks; Yosinski et al., How transferable
are features in deep neural networks?, NeurIPS 2014): a network trained on one data set is either a fixed feature extractor — the backbone frozen, BN in inference mode, only a new
classifier trained — or fine-tuned end to end, usually with a smaller learning rate for the
pretrained backbone than for the freshly initialised head. The weights come from a visionzoo
run (directory or .safetensors) or a torchvision/timm state_dict of the twin architecture
(converted by `registry.convert_state_dict`, as `weights.load_pretrained` does).
"""
from __future__ import annotations

from torch import nn

from ..core.errors import UsageError
from ..weights import load_pretrained, read_state_dict
from .optim import head_parameters


def source_classes(model: nn.Module, name: str, state: dict) -> int:
    """Outputs of the classifier in a (possibly twin-named) state_dict."""
    from ..registry import convert_state_dict, get_entry
    key = f"{model.classifier_name}.weight"
    candidates = [state]
    for source in get_entry(name).twins:
        try:
            candidates.append(convert_state_dict(name, state, source))
        except (KeyError, ValueError):
            continue
    for candidate in candidates:
        if key in candidate:
            return int(candidate[key].shape[0])
    raise UsageError(f"--finetune: no classifier weight {key!r} in the weights of {name}; "
                     "give a checkpoint of the same architecture")


def load_for_finetuning(model: nn.Module, name: str, path, stem: str = "data") -> int:
    """Load `path` into `model`; a head of another size is loaded as it was, then replaced by a
    fresh one for `model`'s classes. Returns the source's number of classes.

    ImageNet weights onto small grey images: an RGB first convolution is summed for one channel
    (timm's rule); with `stem="map"` an ImageNet stem's kernels are also resized onto the model's
    small-input stem (with "keep" the task has built the network with the file's stem; with "data",
    for the data's size, a file whose stem does not fit is refused naming the two others)."""
    classes = model.num_classes
    before = source_classes(model, name, read_state_dict(path))
    if before != classes:
        model.reset_classifier(before)
    load_pretrained(model, name, path, resize_first_conv=stem == "map")
    if before != classes:
        model.reset_classifier(classes)
    return before


def _inference_mode(module: nn.Module, args) -> None:
    module.train(False)   # frozen BN: running statistics used and left as they are


def freeze_backbone(model: nn.Module) -> None:
    """Only the classifier trains: every other parameter is fixed and every backbone BN layer
    normalises with its running statistics, which stay unchanged."""
    head = head_parameters(model)
    if not head:
        raise UsageError("--freeze-backbone: this network has no classifier layer to train")
    for p in model.parameters():
        p.requires_grad_(id(p) in head)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            module.register_forward_pre_hook(_inference_mode)

