"""Deep Compression's centroid fine-tuning: the default optimiser is the paper's SGD rule (Sec. 3.3)."""
import torch

import visionzoo as vz
from visionzoo.compress import quantize
from visionzoo.compress.pipeline import Options, finetune_settings
from visionzoo.compress.retrain import train_config
from visionzoo.engine.optim import build_optimizer

META = {"name": "lenet", "kwargs": {"num_classes": 10, "in_chans": 1}, "data": "digits", "input_size": [1, 16, 16]}


def test_default_centroid_update_is_minus_lr_times_the_summed_cluster_gradient():
    torch.manual_seed(0)
    model = vz.create_model("lenet", num_classes=10, in_chans=1, image_size=16)
    shared = quantize.share_weights(model, 2, 2)
    hook = quantize.CentroidHook(model, shared)
    config = train_config(META, finetune_settings(Options(finetune_lr=0.05)))
    optimizer = build_optimizer(model, config)
    x = torch.randn(3, 1, 16, 16)
    for _ in range(2):  # a second step would differ under momentum or weight decay
        layers = {n: model.get_submodule(n) for n in shared}
        # the codebook now: every weight of a cluster holds the cluster's value
        books = {n: torch.zeros(4).scatter_(0, shared[n].codes.flatten(), layer.weight.detach().flatten())
                 for n, layer in layers.items()}
        optimizer.zero_grad()
        model(x).square().mean().backward()
        raw = {n: layer.weight.grad.clone() for n, layer in layers.items()}
        hook.after_backward(None)
        optimizer.step()
        for name, layer in layers.items():
            codes = shared[name].codes
            summed = torch.zeros(4).index_add_(0, codes.flatten(), raw[name].flatten())
            torch.testing.assert_close(layer.weight.detach(), (books[name] - 0.05 * summed)[codes])
