"""Where a Fashion-MNIST GAN's FID lies: in coarse shape or in fine detail.

FID (Heusel et al., NeurIPS 2017, Eq. 6) is measured in the penultimate features of the
`fid-reference-fmnist` classifier, as `visionzoo eval` does. This script takes one generative run and
prints, for 10 000 samples against the 10 000 test images (and, as the floor, 10 000 training images
against the same test images):

* the radial power spectrum of samples and test images (mean |FFT|² of the [0, 1] pixels in rings of
  2/28 cycles per pixel) and their ratio: whether the samples hold as much fine detail as real images;
* FID and floor after a Gaussian blur of σ = 0.5 and 0.7 pixels (torchvision's, 5 × 5 kernel)
  applied to samples, training and test images alike: how much of the distance the finest scales carry;
* for a run at another size than 28 × 28 (e.g. `--image-size 32`), the FID of its samples — which the
  reference brings to 28 × 28 — against the unresampled 28 × 28 test images, beside the run's own FID,
  whose test images went 28 → 32 → 28 through the same two resamplings as the samples.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gan_fid_detail.py RUN [--reference DIR] [--n 10000]
"""
from __future__ import annotations

import argparse
import math

import torch
from torchvision.transforms.v2.functional import gaussian_blur

from visionzoo.data.datasets import load_data
from visionzoo.metrics.generative import fid_from_features
from visionzoo.tasks.generative import ReferenceFeatures, default_reference, generate, to_uint8
from visionzoo.weights import load_checkpoint

BLUR_SIGMAS = (0.5, 0.7)
RING = 2            # width of a spectrum ring, in 1/28 cycles per pixel
SAMPLE_SEED = 1


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """uint8 images blurred by torchvision's 5 × 5 Gaussian of std `sigma` (reflected border)."""
    return gaussian_blur(images, [5, 5], [sigma, sigma])


def radial_power(images: torch.Tensor) -> list[float]:
    """Mean power of the [0, 1] images' 2-D FFT in rings RING/side wide, from the lowest frequencies."""
    side = images.shape[-1]
    frequencies = torch.fft.fftfreq(side)
    radius = (frequencies[:, None] ** 2 + frequencies[None, :] ** 2).sqrt() * side
    power = (torch.fft.fft2(images.float() / 255).abs() ** 2).mean((0, 1))
    corner = math.ceil(side / 2 * math.sqrt(2))   # the largest radius there is
    return [float(power[(radius >= r) & (radius < r + RING)].mean()) for r in range(0, corner, RING)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a generative run directory (Fashion-MNIST)")
    parser.add_argument("--reference", default=str(default_reference("fashion-mnist")),
                        help="the FID reference run (default: the cached fid-reference-fmnist)")
    parser.add_argument("--n", type=int, default=10000, help="samples, training and test images (default 10000)")
    args = parser.parse_args()

    model, meta = load_checkpoint(args.run)
    reference = ReferenceFeatures(args.reference, device="cpu")
    data = load_data("fashion-mnist", val_size=5000)
    test, train = data.test.images[:args.n], data.train.images[:args.n]
    samples = to_uint8(generate(model.generator, args.n, latent_dim=model.latent_dim, seed=SAMPLE_SEED))
    side = samples.shape[-1]
    print(f"run {args.run}: {meta.get('name', '?')}, samples {tuple(samples.shape[1:])}, reference {reference.path}")

    if side == test.shape[-1]:
        print(f"\nradial power (rings of {RING}/{side} cycles per pixel): test, samples, samples / test")
        for ring, (real, fake) in enumerate(zip(radial_power(test), radial_power(samples))):
            print(f"  {ring * RING:2d}–{ring * RING + RING:2d}: {real:11.3f} {fake:11.3f} {fake / real:7.3f}")
        test_features = reference.features(test)
        print(f"\nFID samples vs test {fid_from_features(reference.features(samples), test_features):.4f}, "
              f"floor (train vs test) {fid_from_features(reference.features(train), test_features):.4f}")
        for sigma in BLUR_SIGMAS:
            test_features = reference.features(blurred(test, sigma))
            fake = fid_from_features(reference.features(blurred(samples, sigma)), test_features)
            floor = fid_from_features(reference.features(blurred(train, sigma)), test_features)
            print(f"all blurred, σ = {sigma}: FID {fake:.4f}, floor {floor:.4f}")
    else:
        test_features = reference.features(test)
        print(f"\nFID of the {side}² samples (resized by the reference) vs the unresampled 28² test images "
              f"{fid_from_features(reference.features(samples), test_features):.4f}, floor (train vs test, 28²) "
              f"{fid_from_features(reference.features(train), test_features):.4f}")


if __name__ == "__main__":
    main()
