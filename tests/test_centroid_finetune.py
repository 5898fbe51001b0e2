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


def test_density_initialisation_spaces_the_centroids_evenly_on_the_cdf():
    """Sec. 3.2: density init places the k centroids at the CDF's evenly spaced interior quantiles j/(k + 1);
    for weights uniform on [0, 1] those are 0.2, 0.4, 0.6, 0.8 (k = 4), while linear init spans min to max."""
    generator = torch.Generator().manual_seed(0)
    weights = torch.linspace(0, 1, 1001, dtype=torch.float64)[torch.randperm(1001, generator=generator)]   # shuffled
    density = quantize.init_centroids(weights, 4, "density", generator)
    torch.testing.assert_close(density, torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=torch.float64))
    linear = quantize.init_centroids(weights, 4, "linear", generator)
    torch.testing.assert_close(linear, torch.tensor([0, 1 / 3, 2 / 3, 1], dtype=torch.float64))
