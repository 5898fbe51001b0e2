"""Our Grad-CAM (Selvaraju et al., ICCV 2017, Eq. 1–2) against pytorch-grad-cam's `GradCAM`.

For each network and a few random images: the Pearson correlation of the two maps (both min-max
scaled to [0, 1] at input resolution, as pytorch-grad-cam returns them) and the wall-time ratio
ours / theirs (median of repeated calls). Untrained networks at seed 0; the maps depend only on the
layer's activations and gradients, so agreement does not need training. Prints a Markdown table;
this is a benchmark, not a test.

    .venv/bin/pip install grad-cam
    .venv/bin/python benchmarks/gradcam_compare.py [--size 64] [--images 4] [--repeat 5] [MODEL ...]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from visionzoo.explain.attribution import grad_cam, upsample
from visionzoo.explain.hooks import find_layer
from visionzoo.registry import create_model

DEFAULT_MODELS = ["resnet18", "vgg11_bn", "densenet121", "alexnet"]


def min_max(array: np.ndarray) -> np.ndarray:
    array = array - array.min()
    return array / (array.max() + 1e-7)


def median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def compare(name: str, size: int, images: int, repeat: int) -> dict:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, image_size=size).eval()
    layer_name, layer = find_layer(model, None)
    theirs = GradCAM(model=model, target_layers=[layer])
    correlations, ratios = [], []
    for i in range(images):
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(i))
        target = int(model(x).argmax())
        ours = lambda: upsample(grad_cam(model, x, target, layer_name), (size, size))
        reference = lambda: theirs(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]
        a, b = min_max(ours().numpy()), reference()
        if a.std() > 0 and b.std() > 0:
            correlations.append(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
        ratios.append(median_seconds(ours, repeat) / median_seconds(reference, repeat))
    return {"model": name, "layer": layer_name, "corr_min": min(correlations, default=float("nan")),
            "corr_mean": statistics.fmean(correlations) if correlations else float("nan"),
            "time_ratio": statistics.median(ratios), "n": len(correlations)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        raise SystemExit("needs pytorch-grad-cam: .venv/bin/pip install grad-cam")
    torch.set_num_threads(2)
    print(f"Grad-CAM at {args.size}×{args.size}, {args.images} random images per network")
    print("| network | layer | correlation (min / mean) | time ours / pytorch-grad-cam |")
    print("| --- | --- | --- | --- |")
    for name in args.models:
        row = compare(name, args.size, args.images, args.repeat)
        print(f"| {row['model']} | {row['layer']} | {row['corr_min']:.4f} / {row['corr_mean']:.4f} "
              f"(n={row['n']}) | {row['time_ratio']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
