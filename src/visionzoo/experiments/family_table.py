"""A Fashion-MNIST leaderboard: one network per family of the zoo, trained at equal budget.

Notes 001, "Network Depth of ImageNet Challenge Winner", and notes 004, "Challenge winner's
accuracy" (the ImageNet error falling year by year as the architectures changed), read as a claim
about architectures: at the same training budget, the later families beat the
earlier ones. Here each network is trained by the Trainer with the same data, epochs, batch,
optimiser and schedule (the families' own small-input stems), and the verdict is the Spearman
rank correlation between a family's year and its test accuracy, over the networks that left chance
(test top-1 above twice 1/classes): one that has not started learning at this budget says
nothing about its architecture's ceiling, and is named in the result instead. Next to each network stands the
nearest entry of the Fashion-MNIST benchmark table (Xiao, Rasul, Vollgraf 2017; the data set's
README, results submitted by users and not re-checked by its authors): longer training, other
preprocessing and often a different member of the family, so a reference point, not a target.

One rate does not fit every family (issue 26, item 13). Short runs with this experiment's optimiser
(`visionzoo train --model M --train-limit 960 --epochs 2 --image-size 14 --batch-size 64 --lr LR
--optimizer nesterov --schedule onecycle --weight-decay 5e-4 --crop 0 --no-flip --label-smoothing 0
--val-size 200 --test-limit 500 --amp off`, 30 steps): at lr 0.05 nin_cifar10 ends with every class
score exactly 0 on the training images (validation loss ln 10, one prediction for all); at lr 0.01
its scores stay alive (validation top-1 0.205 and rising, 4 classes predicted), so NiN trains at
`OWN_LR`.

SqueezeNet 1.1 stays at chance through its head, not a defect of ours.
`benchmarks/squeezenet_reference.py` trains it with this experiment's optimiser in a plain loop at
28×28 (2 000 training images, the full run's one-cycle over 375 steps of which the first 60 run) and
reports, after 60 steps and on 250 images each: share of class scores exactly 0 / classes predicted /
training top-1 / validation top-1. torchvision's squeezenet1_1(num_classes=10) under the same
small-input stem (conv1 3×3 stride 1, no first pool: the only difference) takes our weights strictly
and computes the same scores (largest difference 0), and our initialisation is torchvision's
(kaiming-uniform, conv10 N(0, 0.01)); with its own random weights it stalls as ours does: ours 0.90 /
3 / 0.13 / 0.11, torchvision's 1.00 / 1 / 0.08 / 0.12. The cause is conv10 → ReLU → average pool: a
class whose map is negative at every position scores 0 and receives no gradient. After 25 steps 7 of
the 10 class maps are negative everywhere while the trunk lives (half of the last Fire module's
outputs positive, 2 of 512 channels never); 31 % of the scores are 0 after 5 steps, the ramp still
below 0.005 (the paper's rate at this batch). No faithful setting kept them alive: the paper's solver
at batch 64 (0.04 at batch 512 scaled linearly to 0.005, linear decay): 0.80 / 4 / 0.18 / 0.13; the
authors' released initialisation (Caffe's xavier, ±√(3/fan_in), below a N(0, 0.01) conv10) at 0.05:
0.70 / 1 / 0.07 / 0.10, and with the paper's solver too: 0.69 / 1 / 0.07 / 0.10; a 50-step linear
warm-up at 0.05 (a diagnostic; the paper has none): 0.93 / 3 / 0.14 / 0.11. (The Trainer's 30-step
runs above had 70 % of its scores 0 at 0.05 and 62 % at 0.01, one class predicted.) SqueezeNet
therefore keeps the shared rate and is reported among the networks left at chance.
"""
from __future__ import annotations

from .. import registry
from .base import Context, Outcome, experiment, verdict
from .common import figure, precision_note, save_figure, train_registered

FAMILIES = ("lenet", "nin_cifar10", "vgg11", "resnet20_cifar", "squeezenet1_1", "densenet_bc_100_12",
            "mobilenet_v2", "shufflenet_v2_x0_5", "efficientnet_b0")

SHARED_LR = 0.05
# NiN has no normalisation and its class scores pass a ReLU: at the shared rate the early steps push
# every class map below zero, the ReLU then passes no gradient and the prediction stays constant
# (measured runs in the module docstring); at 0.01 it learns. SqueezeNet's class scores die the same
# way at every rate and initialisation its paper allows (module docstring), so it keeps the shared rate.
OWN_LR = {"nin_cifar10": 0.01}

# The Fashion-MNIST README's benchmark table: (its classifier and preprocessing, test accuracy).
PUBLISHED = {
    "lenet": ("2 conv layers with max pooling (Keras), no preprocessing", 0.876),
    "vgg11": ("VGG16, 26M parameters, no preprocessing", 0.935),
    "resnet20_cifar": ("ResNet18, flips, translation, rotation", 0.949),
    "squeezenet1_1": ("SqueezeNet, cyclical learning rate, 200 epochs", 0.900),
    "densenet_bc_100_12": ("DenseNet-BC 768K parameters, crops and flips", 0.954),
    "mobilenet_v2": ("MobileNet (v1), horizontal flips", 0.950),
}


def spearman(xs: list[float], ys: list[float]) -> float:
    """Rank correlation (average ranks for ties)."""
    def ranks(values):
        order = sorted(range(len(values)), key=values.__getitem__)
        result = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                result[order[k]] = (i + j) / 2
            i = j + 1
        return result
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    norm = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / norm if norm else 0.0


@experiment("family-table", notes="001", heading="Network Depth of ImageNet Challenge Winner",
            claim="at equal training budget, later network families reach a higher accuracy than earlier ones "
                  "(the ImageNet challenge winners' error falling year by year)")
def family_table(ctx: Context) -> Outcome:
    names = ctx.pick(("lenet", "resnet20_cifar", "shufflenet_v2_x0_5"),
                     ("lenet", "resnet20_cifar", "mobilenet_v2", "shufflenet_v2_x0_5"), FAMILIES)
    settings = dict(train_limit=ctx.pick(64, 3000, 8000), epochs=ctx.pick(1, 2, 3), batch_size=64, lr=SHARED_LR,
                    optimizer="nesterov", schedule="onecycle", image_size=ctx.pick(28, None, None))
    table = []
    for name in names:
        summary, trainer = train_registered(ctx, name, name, **{**settings, "lr": OWN_LR.get(name, SHARED_LR)})
        chance = 1 / len(trainer.data.classes)
        card = registry.model_card(name)
        table.append({"network": name, "family": card["family"], "year": card["year"], "params": summary["params"],
                      "macs": summary["macs"], "test_top1": summary["test_top1"],
                      "train_seconds": summary["train_seconds"], "left_chance": summary["test_top1"] > 2 * chance,
                      "published": PUBLISHED.get(name, ("", None))[1], "published_as": PUBLISHED.get(name, ("", None))[0]})
    table.sort(key=lambda r: -r["test_top1"])
    learned = [r for r in table if r["left_chance"]]
    stuck = [r["network"] for r in table if not r["left_chance"]]
    rho = spearman([r["year"] for r in learned], [r["test_top1"] for r in learned]) if len(learned) > 2 else 0.0

    fig, axes = figure(1, 2)
    for row in table:
        axes[0, 0].plot(row["year"], row["test_top1"], "o")
        axes[0, 0].annotate(row["network"], (row["year"], row["test_top1"]), fontsize=7)
        if row["published"] is not None:
            axes[0, 0].plot(row["year"], row["published"], "x", color="grey")
        axes[0, 1].plot(row["macs"], row["test_top1"], "o")
        axes[0, 1].annotate(row["network"], (row["macs"], row["test_top1"]), fontsize=7)
    axes[0, 0].set(xlabel="year", ylabel="test top-1 (× published, longer training)",
                   title=f"Spearman ρ(year, accuracy) = {rho:.2f}")
    axes[0, 1].set(xscale="log", xlabel="MACs per image", ylabel="test top-1")
    return Outcome(
        verdict(rho > 0.5, conclusive=abs(rho) > 0.5),
        "Test top-1: " + ", ".join(f"{r['network']} ({r['year']}) {r['test_top1']:.4f}" for r in table)
        + (f"; still at chance, left out of ρ: {', '.join(stuck)}" if stuck else "")
        + f"; Spearman ρ(year, accuracy) = {rho:.2f} over {len(learned)} networks (held above 0.5, did not hold "
        "below −0.5, else inconclusive). "
        + "Published Fashion-MNIST figures for the same families (longer training): "
        + ", ".join(f"{r['network']} {r['published']:.3f}" for r in table if r["published"] is not None) + ".",
        f"Trainer, equal budget for every network: {settings['train_limit'] or 'all'} training images, "
        f"{settings['epochs']} epoch(s), batch 64, Nesterov SGD lr {SHARED_LR} one-cycle"
        + "".join(f" ({name}: {lr})" for name, lr in OWN_LR.items() if name in names)
        + ", weight decay 5e-4, no augmentation, "
        f"no label smoothing; each family's small-input stem at 28×28{precision_note(ctx)}.",
        {"settings": settings, "networks": table, "spearman": rho}, [save_figure(fig, ctx, "family-table.png")], table)
