"""Named training recipes: `visionzoo train --recipe NAME`.

A recipe is a documented set of `TrainConfig` values aimed at a Fashion-MNIST test top-1 (or, for
the U-Net recipes, a test Dice) within a wall-time budget on a 2-core CPU (issue 6: fmnist93 ≥ 93 % in ≤ 2 min, fmnist94 ≥ 94 % in ≤ 5 min,
fmnist95 ≥ 95 % in ≤ 30 min). They follow the CIFAR-10 speed records of D. Page, "How to train
your ResNet" (2018): the ResNet-9 of his post 4 (prep conv, three stages with two residual
blocks, max-pooling, a linear head), one-cycle learning rate with Nesterov SGD, label
smoothing (Szegedy et al. 2016, eq. of §7), random crop and flip applied batch-wise.

The recipes differ in the network's width, the number of epochs and the augmentation; widths are
chosen so that one epoch's cost (≈ MACs × 55 000 × 3) fits the budget at the trainer's measured
rate. At a budget of a few minutes a narrow network trained longer beat a wider one trained
shorter (resnet9_slim for 12 epochs 0.944, 3/8 width for 6 epochs 0.938, same time), and random
crops cost more accuracy than they added (as in the techniques ablation), so the short recipes
keep only flips. Over 25 epochs at 3/8 width the network over-fits (training top-1 0.999); random
erasing (Zhong et al. 2020) instead of crops regularises it (seed 0, last epoch's weights: 0.9496 vs 0.9480). All recipes
test the last epoch's weights (`keep="last"`): the one-cycle rate ends at zero, and picking the
best epoch on 1 000 validation images picked noise — a 30-epoch fmnist95 run tested at its
best-validation epoch 22 (rate still 0.11) gave 0.9426, at its last epoch 0.9517. The longer recipes whiten the first
convolution's input patches and freeze it (`--whiten`: Page's "bag of tricks", 2019; airbench),
which made the early epochs markedly better (validation 0.872 vs 0.850 after one epoch). All
average the test predictions over the image and its mirror (flip TTA, as in the speed records).

The values are applied first; options given explicitly on the command line win. A recipe's
`model_args` (the widths) belong to its model and are dropped when `--model` names another one.
BENCHMARKS.md records what each recipe reached, with the command and the wall time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core.errors import UsageError


@dataclass(frozen=True)
class Recipe:
    name: str
    target: str
    summary: str
    values: dict = field(default_factory=dict)


_PAGE_SCHEDULE = {"optimizer": "nesterov", "momentum": 0.9, "weight_decay": 5e-4, "schedule": "onecycle",
                  "label_smoothing": 0.1, "crop": 2, "flip": True, "batch_size": 256, "lr": 0.2,
                  "keep": "last", "data": "fashion-mnist"}

# U-Net on 64×64 synthetic slices (tasks/segmentation.py); the batch norm lets Adam take a large rate.
_SEGMENTATION = {"optimizer": "adamw", "weight_decay": 1e-4, "schedule": "onecycle", "lr": 0.005, "batch_size": 32,
                 "label_smoothing": 0.0, "crop": 0, "flip": True, "keep": "last", "val_size": 0.1,
                 "model_args": {}}

# GANs (tasks/generative.py): Adam at 2e-4 with β1 = 0.5 (Radford et al., Sec. 4: "β1 at the suggested value
# of 0.9 resulted in training oscillation and instability while reducing it to 0.5 helped stabilize
# training"), a constant rate, no weight decay, batch 128.
_GAN = {"optimizer": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "weight_decay": 0.0, "schedule": "constant",
        "batch_size": 128, "val_size": 5000, "model_args": {}}

RECIPES = {r.name: r for r in (
    Recipe("fmnist93", "≥ 93 % test top-1 in ≤ 2 min",
           "resnet9_slim (16-32-64-128 channels, 17 M MACs/image), 4 epochs, flips only (no crops), "
           "flip TTA at test (measured: 0.9316 median of 3 seeds, 91-93 s of training)",
           {**_PAGE_SCHEDULE, "model": "resnet9_slim", "model_args": {}, "epochs": 4, "crop": 0,
            "test_tta": "flip"}),
    Recipe("fmnist94", "≥ 94 % test top-1 in ≤ 5 min",
           "resnet9_slim, 11 epochs, first convolution whitened and frozen (--whiten), flips only, "
           "1 000 validation images (59 000 train), flip TTA at test",
           {**_PAGE_SCHEDULE, "model": "resnet9_slim", "model_args": {}, "epochs": 11, "crop": 0,
            "whiten": True, "val_size": 1000, "test_tta": "flip"}),
    Recipe("fmnist95", "≥ 95 % test top-1 in ≤ 30 min",
           "resnet9 at 3/8 width (24-48-96-192 channels, 2.25× the MACs of resnet9_slim), 30 epochs, "
           "flips and random erasing (p 0.5) but no crops, --whiten, 1 000 validation images, flip TTA at test "
           "(measured: 0.9517 median of 3 seeds, 24 min 16 s wall)",
           {**_PAGE_SCHEDULE, "model": "resnet9", "model_args": {"widths": [24, 48, 96, 192]}, "epochs": 30,
            "crop": 0, "random_erasing": 0.5, "whiten": True, "val_size": 1000, "test_tta": "flip"}),
    Recipe("lv-unet", "lv-phantom test mean Dice (myocardium, cavity) ≥ 0.90 in ≤ 15 min",
           "unet_small (padded U-Net, width 16, batch norm), AdamW with a one-cycle rate, flips, plain "
           "pixel-wise cross-entropy",
           {**_SEGMENTATION, "model": "unet_small", "data": "lv-phantom", "epochs": 12}),
    Recipe("fmnist-masks-unet", "fmnist-masks test Dice ≥ 0.95",
           "unet_small on Fashion-MNIST silhouettes over textured canvases, as lv-unet",
           {**_SEGMENTATION, "model": "unet_small", "data": "fmnist-masks", "epochs": 3}),
    Recipe("moving-fmnist-r3d", "moving-fmnist test top-1 ≥ 0.95 in ≤ 15 min",
           "r3d_small (3-D ResNet, one block per stage, stem stride 2×4×4) on 16-frame 64×64 clips, SGD "
           "with a one-cycle rate, mirrored clips with their labels swapped",
           {"model": "r3d_small", "data": "moving-fmnist", "epochs": 3, "batch_size": 32, "lr": 0.05,
            "schedule": "onecycle", "label_smoothing": 0.0, "val_size": 1000, "model_args": {}}),
    Recipe("renders-viewpoint", "renders test median azimuth error ≤ 10° in ≤ 15 min",
           "render_for_cnn (small trunk at width 16, class-dependent 3 × 360 heads), AdamW with a one-cycle "
           "rate, the geometry-aware loss with the elevation and in-plane losses weighted 0.1 (at 1 the "
           "azimuth is not learnt at all), no flips (measured: test median error 9.36°, Acc π/6 0.891, "
           "306 s training on one CPU thread)",
           {"model": "render_for_cnn", "data": "renders", "epochs": 8, "batch_size": 64, "optimizer": "adamw",
            "lr": 0.002, "schedule": "onecycle", "label_smoothing": 0.0, "val_size": 1000, "tilt_weight": 0.1,
            "model_args": {"base_width": 16}}),
    # Probes (2026-12-05, 1 200–1 500 scenes, one epoch of one-cycle, batch 8, bf16, on the shared 2-core machine):
    # peak rate 0.02 → val map50 0.32, 0.05 → 0.33, 0.1 → 0.18. One training step costs about 40 ms of CPU per
    # image (one thread, bf16, 1 000 / 500 RPN proposals before / after NMS; 2 000 / 2 000 cost 1.5× more for no
    # use on scenes of at most 6 objects): 5 epochs of 6 000 scenes fit 20 minutes at ≥ 25 img/s.
    Recipe("fmnist-scenes-faster-rcnn", "fmnist-scenes test map50 ≥ 0.90 in ≤ 20 min",
           "faster_rcnn_small (resnet9_slim to stride 8, anchors 16/32/64 px × 3 ratios, a 256-256 head on 7×7 "
           "RoIs), approximate joint training, Nesterov SGD at 0.05 one-cycle, batch 8, weight decay 1e-4, flips, "
           "6 epochs of the 6 000 training scenes; RPN proposals 1 000 / 500 before / after NMS in training, "
           "300 at test (the paper's)",
           {"model": "faster_rcnn_small", "data": "fmnist-scenes", "epochs": 6, "batch_size": 8,
            "optimizer": "nesterov", "lr": 0.05, "weight_decay": 1e-4, "schedule": "onecycle", "flip": True,
            "keep": "last", "val_size": 200,
            "model_args": {"rpn_pre_nms_top_n_train": 1000, "rpn_post_nms_top_n_train": 500}}),
    Recipe("fid-reference-fmnist", "the FID feature network of the Fashion-MNIST GANs (measured: 0.9265 test top-1)",
           "fmnist93's resnet9_slim, whose 128 penultimate features give the GAN runs' FID; write it to "
           "$VISIONZOO_CACHE/fid-reference/fashion-mnist (--out) for GAN runs to find it there",
           {**_PAGE_SCHEDULE, "model": "resnet9_slim", "model_args": {}, "epochs": 4, "crop": 0, "keep": "last"}),
    # Five-epoch probes (2026-12-05, one thread, BENCHMARKS.md): at batch 128 and Adam 2e-4 (the paper's) test FID
    # 11.31; batch 64 8.03, 32 6.59, 16 5.83; batch 32 at 4e-4 5.64, at 8e-4 5.34 — more, larger steps per image
    # seen, for about the same CPU time. Then depth: two 3 × 3 convolutions at 7 × 7 in D 3.21, and two in G as well
    # 1.39 (at 8e-4 1.24); four in G beat two at epoch 3 (validation 1.88 against 2.35); a wider D or G did not pay.
    # Full runs on both cores: constant 8e-4 for 10 epochs 1.02 (23 min), cosine decay for 11 epochs 0.53 (25 min;
    # --seed 1: 0.60 = 9.0 × its floor 0.0665).
    Recipe("fmnist-dcgan", "Fashion-MNIST DCGAN: test FID ≤ 10 × fid_floor in ≤ 30 min",
           "dcgan at 28 × 28 (7 → 14 → 28, width 64) with four 3 × 3 convolutions added at 7 × 7 in G and two in D "
           "(the 28² ladder has two of Fig. 1's four steps), Adam 8e-4 with cosine decay to 0, β = (0.5, 0.999), "
           "batch 32, k = 1, the non-saturating loss, 11 epochs, the networks' exponential moving average (decay "
           "0.9995) sampled; the epoch of the lowest validation FID is kept (measured: test FID 0.53 = 8.2 × "
           "fid_floor 0.065 in 25.4 min of both cores; the shallow networks at 4e-4 for 22 epochs: 3.10)",
           {**_GAN, "model": "dcgan", "data": "fashion-mnist", "epochs": 11, "batch_size": 32, "lr": 8e-4,
            "schedule": "cosine", "ema": 0.9995,
            "model_args": {"width": 64, "g_extra_convs": 4, "d_extra_convs": 2}}),
    # StyleGAN on one CPU thread (bf16, channels_last, batch 64 as the recipe first was, 28²): a discriminator step ≈
    # 0.29 s, a generator step ≈ 0.33 s, an R1 step (double backward) ≈ 1.2 s; with R1 every 16 steps ≈ 95 img/s, so 3
    # epochs of 55 000 images take about 29 min of one thread (less with two), validation included. Run in full
    # 2026-12-05 (one thread, shared machine): test FID 17.09 (fmnist-dcgan then 3.68), 1 919 CPU-s, validation FID
    # 43.2 → 39.3 → 17.2. Short trials (2026-12-05, 3 epochs of 3 000–4 000 images, under load): validation FID
    # (fid_floor 0.30) 35.9 → 35.2 → 34.5 with this recipe, 29.0 → 30.6 → 33.4 without the EMA, 38.9 → 37.0 at lr
    # 1e-3, 36.4 → 34.4 with γ = 10. At batch 32 (StyleGAN2's) on both cores, the EMA's half-life kept in images
    # (2026-12-05, idle machine): 24 min 53 s wall, validation FID 44.3 → 13.8 → 10.7, test 11.21 — better than batch
    # 64's 17.09, as DCGAN's probes were. Then (2026-12-05, later) 128, 64, 32 channels at 7², 14², 28² (1.35 × the
    # images per second of 64 everywhere), G's step on D's fakes (--g-fakes reuse, 1.13 ×) and cosine decay: 4 epochs
    # in 22 min 17 s tested 8.76, 5 epochs in 27 min 34 s 7.90 (validation 29.4, 10.7, 9.39, 8.15, 7.90); --seed 1
    # 13.46 in 28 min 48 s (validation 36.9, 15.9, 13.5, 13.5, 13.2): seeds spread more than the changes gained.
    # Against fmnist-dcgan's discriminator with R1 γ = 10 (2026-12-06, a temporary switch), 8 epochs in 27 min 44 s:
    # 7.87 — the same plateau with 1.6 × the images seen, so it is the generator's (BENCHMARKS.md).
    # Its depth and rate (2026-12-06, three-epoch probes on one thread, BENCHMARKS.md): four more style layers at 7²
    # in G and two convolutions at 7² in D (g_extra_convs / d_extra_convs, as fmnist-dcgan's) tested 8.17 against
    # 10.14 for 1.26 × the CPU time; then the rate — validation FID after two epochs 14.0, 8.66, 7.64 at 1e-3, 2e-3,
    # 4e-3. Both together, 4 epochs (what fits), on both cores: test FID 4.98 in 28 min 10 s (validation 10.8, 5.87,
    # 5.24, 4.81); --seed 1 5.02 in 28 min 05 s (validation 15.1, 6.98, 5.07, 5.46). The rate once more (2026-12-06,
    # full runs on both cores, the reference retrained): 8e-3 tested 3.88 (validation 8.90, 5.15, 4.08, 3.76; 28 min
    # 33 s), --seed 1 3.32 (validation 13.9, 4.65, 3.24, 3.19; 29 min 23 s); 1.6e-2 had validation 30.0, 9.40 after
    # two epochs and the mapping network's rate multiplier raised from 0.01 to 0.1 (at 8e-3) 14.9, 5.88: both stopped.
    # With the discriminator in the paper's code's order and the resampling fused (2026-12-06, commit 96e37df): 3.84
    # (validation 7.97, 4.57, 3.93, 3.82; 28 min 38 s), --seed 1 4.28 (validation 13.2, 6.58, 4.44, 4.42; 24 min 36 s on
    # a faster day's machine); a two-layer mapping network then 9.88, 4.90 (stopped).
    # Equal images with mixing 0.9 (2026-12-06, both cores): --epochs 11 (1 h 16 min) tested 1.11 against
    # fmnist-dcgan's 0.56, and fmnist-dcgan --epochs 4 (10 min) 1.94 against this recipe's 3.84: about twice DCGAN's
    # FID at DCGAN's images too.
    # Style mixing then (2026-12-06, one thread, two runs at a time): with the regularisation at the paper's 0.9 test
    # FID 3.39 (validation 8.75, 5.52, 3.63, 3.41), without it 1.70 (6.92, 2.37, 1.81, 1.57); longer weight averages
    # of the same runs did worse (0.999, 0.9995, 0.9998: 3.44, 3.58, 6.52 and 1.76, 2.57, 5.87). On both cores without
    # mixing: 1.67 in 26 min 39 s (validation 8.46, 2.87, 2.00, 1.85) — below fmnist-dcgan --epochs 4's 1.94 — and
    # --seed 1 1.96 in 25 min 10 s (validation 10.6, 4.12, 2.87, 2.32).
    # Without mixing over DCGAN's 11 epochs (2026-12-06, both cores, ≈ 64 min): 0.60 against fmnist-dcgan's 0.56
    # (validation 6.40, 2.99, 1.73, 1.47, 1.02, 0.95, 0.82, 0.77, 0.81, 0.79, 0.84): level at equal images, so
    # the target is missed on the cost per image alone. Half the channels (channel_base 256: 64, 32, 16 where the
    # recipe had 128, 64, 32) train 2 × the images per second, and 8 epochs in the same time (2026-12-06, both cores)
    # tested 1.18 (validation 7.66, 4.31, 2.84, 1.80, 1.56, 1.41, 1.45, 1.39) and --seed 1 0.96 (validation
    # 8.16, 3.68, 2.04, 1.67, 1.61, 1.35, 1.24, 1.31) — below the full width's 4 epochs (1.67, 1.96, 2.11), though
    # behind it per image: the recipe since. As the recipe, --seed 2 1.36 (validation 8.36, 3.72, 2.60, 1.97, 1.77,
    # 1.61, 1.56, 1.53; 24 min 46 s) against the wide network's 2.11. Its validation FID rose again over the last
    # epochs at the smallest rates; a floor of a quarter of the peak rate (2026-12-07, one thread per run, FID by
    # epochs: the step costs the same) kept it falling to the end and tested 0.93, 1.09, 1.16 and 1.01 (seeds 0–3)
    # against 1.18, 0.96 and 1.36: the recipe since.
    Recipe("fmnist-stylegan", "Fashion-MNIST StyleGAN: test FID at or below fmnist-dcgan's in ≤ 30 min",
           "stylegan_small at 28 × 28 (7 → 14 → 28 with 64, 32, 16 channels: the paper's halving per doubling from a "
           "CPU-sized base, which trains twice the images per second of 128, 64, 32 and gained more by it; the "
           "8-layer mapping network; style mixing off: at this budget the paper's 0.9 doubled the FID) with four more "
           "style layers at 7 × 7 in G and two 3 × 3 convolutions at 7 × 7 in D (the 28² ladder's missing depth, as "
           "fmnist-dcgan's), Adam 8e-3 with cosine decay to a quarter of it, β = (0, 0.99) and batch 32 "
           "(StyleGAN2's), R1 γ = 1 applied lazily every 16 steps (StyleGAN2), the generator's step on the "
           "discriminator step's fakes (--g-fakes reuse), an EMA of the weights with a half-life of about 10 000 "
           "images (decay 0.9975), 8 epochs; the epoch of the lowest "
           "validation FID is kept (measured: test FID 0.93, 1.09, 1.16 and 1.01 with --seed 0 to 3; decaying to 0 "
           "on both cores 1.18 in 27.0 min, 0.96 and 1.36 with --seed 1 and 2; with 128, 64, 32 channels for 4 "
           "epochs 1.67, 1.96 and 2.11, with mixing 0.9 3.84 and 4.28; at 4e-3 4.98 and 5.02; the paper's depth at "
           "2e-3 for 5 epochs: 7.90 and 13.46; fmnist-dcgan's 0.56 — the target not met)",
           {**_GAN, "model": "stylegan_small", "data": "fashion-mnist", "epochs": 8, "batch_size": 32, "lr": 8e-3,
            "betas": [0.0, 0.99], "schedule": "cosine", "lr_floor": 0.25, "g_fakes": "reuse", "ema": 0.9975,
            "model_args": {"channel_base": 256, "g_extra_convs": 4, "d_extra_convs": 2,
                           "r1_gamma": 1.0, "r1_interval": 16, "mixing_probability": 0.0}}),
    Recipe("fmnist-cgan", "Fashion-MNIST conditional GAN: ≥ 90 % of samples classified as their class by the "
                          "FID reference in ≤ 30 min",
           "cdcgan (DCGAN networks, one-hot y on z and as planes on D's input), Adam 2e-4, β = (0.5, 0.999), batch "
           "128 (the DCGAN paper's), 20 epochs, the weights' EMA (decay 0.999) sampled (measured: 0.9058 of 10 000 "
           "samples classified as their class, FID 0.70, in 1 339 CPU-s of one thread; 5 epochs without the average: 0.837)",
           {**_GAN, "model": "cdcgan", "data": "fashion-mnist", "epochs": 20, "ema": 0.999, "model_args": {}}),
    Recipe("ring8-gan", "the ring of 8 Gaussians (Metz et al.): the mode-collapse curves",
           "gan_mlp_2d (two ReLU layers of 128 in G and D, z ∈ ℝ²⁵⁶), Adam 1e-3, β = (0.5, 0.999), batch 512; "
           "modes covered and the high-quality share every epoch, the last epoch kept",
           {**_GAN, "model": "gan_mlp_2d", "data": "ring8", "epochs": 20, "lr": 1e-3, "batch_size": 512,
            "keep": "last", "val_size": 2000}),
    # Measured on one thread (CPU time; the shared machine's wall time was no measure): an epoch of 256 × 2 (2 331
    # windows of 16 × 100 characters) costs about 2.6–3.5 CPU-min, so 12 epochs fit 30 min of the two cores; bf16
    # autocast learnt as fp32 did (val BPC 3.134 vs 3.133 after 100 steps) at 1.8× the speed; 16 streams learnt more
    # per CPU second than 32 (the same cost per character, twice the steps): one epoch alone (its own one-cycle)
    # tested 1.888 BPC, 32 streams 2.033.
    # 8 epochs without dropout (2026-12-05, 16.8 CPU-min) tested 1.674 BPC; 12 with dropout 0.2 (31.4 CPU-min) 1.628
    # static. Graves' dynamic evaluation (§3.1) then adapts to the held-out tail (Hebrews–Revelation): its rate
    # chosen on validation (0.1, 0.3, 1, 3 → val 1.580, 1.542, 1.529, 1.622 from the static 1.680).
    # The recipe (2026-12-05, 40.2 CPU-min under load): test 1.500 BPC dynamic, 1.628 static (BENCHMARKS.md).
    Recipe("kjv-lstm", "kjv character level: test BPC ≤ 1.6 in ≤ 30 min (Graves' deep LSTM)",
           "lstm_lm, 2 layers of 256 LSTM cells with Graves' skip connections (input → every layer → output), "
           "dropout 0.2 between layers, 16 streams × windows of 100 characters with the state carried (truncated "
           "BPTT), Adam 3e-3 one-cycle, gradient norm clipped at 1, 12 epochs, the best validation epoch kept; "
           "tested by dynamic evaluation (SGD rate 1, tuned on validation), the static figure beside it",
           {"model": "lstm_lm", "data": "kjv", "level": "char",
            "model_args": {"hidden_size": 256, "num_layers": 2, "dropout": 0.2},
            "bptt": 100, "batch_size": 16, "epochs": 12, "optimizer": "adam", "lr": 3e-3, "weight_decay": 0.0,
            "schedule": "onecycle", "clip_grad": 1.0, "keep": "best", "dynamic_eval": 1.0}),
    # The Transformer's figure for the kjv target's time (2026-12-05, one thread under load: 54.4 CPU-min, more than
    # the LSTM's 40.2): test 1.904 BPC static (validation 2.146, 1.953 after epochs 1 and 2) against the LSTM's 1.628.
    Recipe("kjv-transformer-lm", "kjv character level: what a decoder-only Transformer reaches in the LSTM's time",
           "transformer_lm (d_model 256, 4 pre-LN layers, 4 heads, d_ff 1024, context 128), 16 streams × windows of "
           "128 characters, Adam 1e-3 one-cycle, gradient norm clipped at 1, bf16 autocast, 2 epochs, the best "
           "validation epoch kept",
           {"model": "transformer_lm", "data": "kjv", "level": "char", "model_args": {}, "bptt": 128,
            "batch_size": 16, "epochs": 2, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
            "schedule": "onecycle", "clip_grad": 1.0, "amp": "on", "keep": "best"}),
    # Translation (tasks/translation.py). Measured with one thread (CPU time, batches of 64 Bible verse pairs,
    # 462 steps an epoch): transformer_small 1.74 s a step in fp32, 1.21 s with bf16 autocast (9.4 CPU-min an
    # epoch), rnnsearch 2.0 s (15.4 CPU-min), seq2seq_lstm 2.5 s (19.2 CPU-min); epochs chosen for 30 min of two
    # threads at about 1.7× one thread's speed, validation and the beam-search test included. Measured (2026-12-05,
    # one thread, 34.5 CPU-min): the transformer recipe's test BLEU 26.16 with beam 4, 23.55 greedy (val BLEU 23.9).
    Recipe("bible-en-es-transformer", "bible-en-es test BLEU ≥ 15 in ≤ 30 min (the Transformer)",
           "transformer_small (d_model 256, 3 + 3 pre-LN layers, 4 heads, shared 8 000-piece SentencePiece "
           "vocabulary), Adam β = (0.9, 0.98) with Vaswani's inverse-square-root rate (peak 2e-3 after 0.3 "
           "epoch of warm-up), label smoothing 0.1, gradient norm clipped at 1, bf16 autocast, 4 epochs, the "
           "best validation BLEU kept, beam 4 at test",
           {"model": "transformer_small", "data": "bible-en-es", "model_args": {}, "vocab_size": 8000,
            "batch_size": 64, "epochs": 4, "optimizer": "adam", "betas": [0.9, 0.98], "lr": 2e-3,
            "schedule": "rsqrt", "warmup_epochs": 0.3, "weight_decay": 0.0, "clip_grad": 1.0,
            "label_smoothing": 0.1, "amp": "on", "beam": 4, "keep": "best"}),
    # Measured (2026-12-05, one thread): rnnsearch test BLEU 18.41 (18.87 on sources over 30 words), seq2seq 3.06
    # (2.85); validation BLEU after epochs 1 / 2: 7.26 / 13.07 against 0.47 / 2.57.
    Recipe("bible-en-es-rnnsearch", "bible-en-es: RNNsearch, above seq2seq on sources over 30 words",
           "rnnsearch (bidirectional GRU encoder of 2 × 256, additive attention, GRU decoder of 256, maxout "
           "256), Adam 1e-3 with the inverse-square-root rate, gradient norm clipped at 1 (Bahdanau: 1), "
           "label smoothing 0.1, 3 epochs, beam 4 at test",
           {"model": "rnnsearch", "data": "bible-en-es", "model_args": {}, "vocab_size": 8000, "batch_size": 64,
            "epochs": 3, "optimizer": "adam", "lr": 1e-3, "schedule": "rsqrt", "warmup_epochs": 0.3,
            "weight_decay": 0.0, "clip_grad": 1.0, "label_smoothing": 0.1, "amp": "off", "beam": 4,
            "keep": "best"}),
    Recipe("bible-en-es-seq2seq", "bible-en-es: Sutskever's fixed-vector encoder-decoder, the baseline",
           "seq2seq_lstm (2 layers of 512 LSTM cells each side, the source reversed), as bible-en-es-rnnsearch, "
           "2 epochs",
           {"model": "seq2seq_lstm", "data": "bible-en-es", "model_args": {}, "vocab_size": 8000, "batch_size": 64,
            "epochs": 2, "optimizer": "adam", "lr": 1e-3, "schedule": "rsqrt", "warmup_epochs": 0.3,
            "weight_decay": 0.0, "clip_grad": 1.0, "label_smoothing": 0.1, "amp": "off", "beam": 4,
            "keep": "best"}),
    # Cloze (tasks/cloze.py). Measured (2026-12-05, one thread on the shared 2-core machine, batches of 32): the
    # same settings for 2 epochs reached test top-1 0.442 (val 0.583) in 376 s, 150–220 s an epoch; the
    # exclusive-frequency baseline answers 0.426 of the test questions (0.505 of val).
    Recipe("kjv-cloze-reader", "kjv-cloze test top-1 above the exclusive-frequency baseline (0.426) in ≤ 30 min",
           "attentive_reader (Hermann et al.; 64-dimensional embeddings, bidirectional LSTMs of 2 × 64), Adam 3e-3 "
           "with a one-cycle rate, gradient norm clipped at 5, batches of 32 questions, 8 epochs, the best "
           "validation top-1 kept",
           {"model": "attentive_reader", "data": "kjv-cloze", "model_args": {}, "batch_size": 32, "epochs": 8,
            "optimizer": "adam", "lr": 3e-3, "schedule": "onecycle", "weight_decay": 0.0, "clip_grad": 5.0,
            "amp": "off", "keep": "best"}),
)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UsageError(f"--recipe {name!r}: choose one of {', '.join(RECIPES)} (or `--recipe list`)")
    return RECIPES[name]


def apply_recipe(name: str, explicit: dict) -> dict:
    """TrainConfig fields: the recipe's values, overridden by the `explicit` ones, plus recipe=name."""
    values = get_recipe(name).values
    merged = {**values, **explicit, "recipe": name}
    same_model = merged["model"] == values["model"]
    merged["model_args"] = {**(values["model_args"] if same_model else {}), **explicit.get("model_args", {})}
    return merged


def describe_recipes() -> str:
    """What `visionzoo train --recipe list` prints."""
    lines = []
    for recipe in RECIPES.values():
        settings = " ".join(f"{key}={value}" for key, value in recipe.values.items() if value != {})
        lines.append(f"{recipe.name}: {recipe.target}\n    {recipe.summary}\n    {settings}")
    return "\n".join(lines)
