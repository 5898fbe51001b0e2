"""The notes' MNIST-format accuracy tables, trained again, and the notes' own arithmetic, recomputed.

Tables (notes 002): MCDNN's MNIST table (Cireşan, Meier, Schmidhuber, CVPR 2012: MCDNN 0.23 %
against single CNNs at 0.39–0.40 %), NiN's Table 4 (Lin, Chen, Yan, ICLR 2014: a 2-layer CNN
0.53 %, stochastic pooling 0.47 %, NiN 0.47 %, conv. maxout 0.45 %), the ODE-Net table (Chen et al.,
NeurIPS 2018, Table 1: 1-layer MLP 1.60 %, ResNet 0.41 %, RK-Net 0.47 %, ODE-Net 0.42 %) and
CapsNet's Table 1 (Sabour, Frosst, Hinton, NeurIPS 2017: 1 routing iteration 0.29 %, 3 iterations
0.25 %, both with the reconstruction loss). Each row the zoo has is trained with the Trainer on
Fashion-MNIST, the MNIST stand-in (same format, ten classes, but much harder: errors of several
per cent where MNIST's are tenths of one), and printed beside the table's value with its budget.
Absolute errors cannot match; the verdict is on the table's *ordering* of one pair of rows: held
when our errors order the pair as the table does by more than twice the standard error of their
difference on our test images, did not hold when reversed by that much, inconclusive otherwise or
when a network has not left chance (test accuracy ≤ twice 1/10) at the budget. Rows whose network
differs from the table's (a stand-in) say so in their note.

Budgets: smoke (digits, 64 images: the machinery), quick (2,000 Fashion-MNIST images, 2 epochs,
the first 2,000 test images; CapsNet and NiN fewer: about 1–4 min a table on 2 free CPU cores),
full (20,000 images, 6 epochs, the whole test set: about 15–40 min a table on the same CPU, the
CapsNet table longest; minutes on a GPU). The training time of every row is in the outcome.

notes-numbers recomputes, with the library, numbers the notes print: the map sides of
Inception-v3's Table 1 (the output-size formula and `inception_v3_paper`), MobileNet's Table 4
costs, the parameter counts of the WRN and ODE-Net tables, MCDNN's "relative improvement" column,
and Deep Compression's compression rate r = nb / (n log₂ k + kb) for the notes' 4×4, 4-cluster
example. The verdict: every printed number agrees (within its printed rounding) or is a misprint
we can name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .. import registry
from .base import Context, Outcome, experiment, verdict
from .common import figure, precision_note, save_figure, train_registered


@dataclass(frozen=True)
class Row:
    label: str           # the row as the table prints it
    error: float         # the table's MNIST test error, per cent
    network: str         # the zoo network trained for it
    settings: dict = field(default_factory=dict)   # TrainConfig overrides for this row
    note: str = ""       # how our network differs from the row's
    quick: bool = True   # trained at the quick budget (the rest only at full)


@dataclass(frozen=True)
class Table:
    name: str
    heading: str
    source: str
    rows: tuple[Row, ...]
    better: str          # the pair of rows the verdict compares: the table's lower error …
    worse: str           # … and its higher one
    # per-budget (train images, epochs, test images) where the table's networks need other sizes
    sizes: dict = field(default_factory=dict)


TABLES = (
    Table("mcdnn-table", "Multi-column Deep Neural Networks for Image Classification",
          "MCDNN, Results on MNIST dataset",
          (Row("MCDNN (this)", 0.23, "mcdnn", note="5 columns (original, width 10/14/18, contrast), the paper's 35"),
           Row("CNN [26]", 0.39, "mcdnn_column", note="one MCDNN column stands in for the best single CNN"),
           Row("MLP [5]", 0.35, "lenet300_100", quick=False,
               note="a 300-100 MLP; [5] is a 6-layer MLP trained on deformed digits")),
          better="MCDNN (this)", worse="CNN [26]"),
    Table("nin-mnist-table", "Network In Network", "NiN Table 4: test set error rates for MNIST",
          (Row("2-Layer CNN + 2-Layer NN", 0.53, "lenet", note="LeNet: 2 conv + 2 FC layers"),
           Row("Stochastic Pooling", 0.47, "lenet", {"pool": "stochastic"},
               note="LeNet with stochastic pooling in place of max-pooling"),
           Row("NIN + Dropout", 0.47, "nin_cifar10", note="the CIFAR-10 NiN (three mlpconv blocks)"),
           Row("Conv. maxout + Dropout", 0.45, "lenet", {"act": "maxout"}, quick=False,
               note="LeNet with 2-piece maxout units, without dropout (LeNet has no dropout layer)")),
          better="NIN + Dropout", worse="2-Layer CNN + 2-Layer NN",
          sizes={"quick": (1000, 2, 2000)}),
    Table("odenet-table", "Neural Ordinary Differential Equations", "ODE-Net Table 1: performance on MNIST",
          (Row("1-Layer MLP", 1.60, "mlp1_mnist"),
           Row("ResNet", 0.41, "odenet_resnet_mnist", quick=False),
           Row("RK-Net", 0.47, "odenet_mnist", note="backpropagation through 4 fixed RK4 steps (not dopri5)"),
           Row("ODE-Net", 0.42, "odenet_mnist", {"model_args": {"adjoint": True}},
               note="adjoint gradients through 4 fixed RK4 steps (not dopri5)")),
          better="ODE-Net", worse="1-Layer MLP"),
    Table("capsnet-table", "Dynamic Routing Between Capsules", "CapsNet Table 1: MNIST test error",
          (Row("CapsNet, routing 3, reconstruction", 0.25, "capsnet", {"model_args": {"routing_iterations": 3}}),
           Row("CapsNet, routing 1, reconstruction", 0.29, "capsnet", {"model_args": {"routing_iterations": 1}})),
          better="CapsNet, routing 3, reconstruction", worse="CapsNet, routing 1, reconstruction",
          sizes={"quick": (500, 1, 1000)}),
)
_ROW_SETTINGS = {"capsnet": {"optimizer": "adam", "lr": 1e-3, "schedule": "cosine"}}   # the paper's Adam


def budget_sizes(ctx: Context, table: Table) -> tuple[int, int, int | None]:
    """(training images, epochs, test images; None: all) of `table` at this budget."""
    default = ctx.pick((64, 1, 64), (2000, 2, 2000), (20000, 6, None))
    return table.sizes.get(ctx.budget, default)


# A compared network whose last epoch still misclassifies more of its own training batches than this
# has not fitted at the budget: its test error says nothing about the table's ordering.
FITTED_TRAIN_ERROR = 0.3


def ordering_verdict(ours: dict[str, float], table: Table, tested: int, chance_error: float,
                     train_errors: dict[str, float] | None = None) -> tuple[str, str]:
    """The verdict on the table's pair and why: held when our errors order the pair as the table does
    by more than twice the standard error of the difference of two error rates on `tested` images;
    inconclusive when a compared network is at chance or has not fitted its training set."""
    if table.better not in ours or table.worse not in ours:
        return verdict(False, conclusive=False), "the zoo lacks a network of the compared pair"
    better, worse = ours[table.better], ours[table.worse]
    margin = 2 * math.sqrt((better * (1 - better) + worse * (1 - worse)) / tested)
    stuck = [label for label, error in ours.items() if error >= chance_error and label in (table.better, table.worse)]
    gap = worse - better
    why = (f"{table.worse} − {table.better} = {gap:+.4f} here (table {table_gap(table):+.2f} points on MNIST), "
           f"margin ±{margin:.4f} (2 SE on {tested} test images)")
    if stuck:
        return verdict(False, conclusive=False), why + f"; not past chance at this budget: {', '.join(stuck)}"
    unfitted = [f"{label} {error:.3f}" for label, error in (train_errors or {}).items()
                if error > FITTED_TRAIN_ERROR and label in (table.better, table.worse)]
    if unfitted:
        return verdict(False, conclusive=False), why + (f"; not fitted at this budget (last-epoch training error "
                                                        f"> {FITTED_TRAIN_ERROR}): {', '.join(unfitted)}")
    return verdict(gap > 0, conclusive=abs(gap) > margin), why


def table_gap(table: Table) -> float:
    errors = {row.label: row.error for row in table.rows}
    return errors[table.worse] - errors[table.better]


def run_table(ctx: Context, table: Table) -> Outcome:
    train_limit, epochs, test_limit = budget_sizes(ctx, table)
    available = set(registry.list_models())
    rows = [r for r in table.rows if r.network in available and (r.quick or ctx.budget != "quick")]
    results, ours, train_errors, tested, classes = [], {}, {}, 0, 10
    for index, row in enumerate(rows):
        settings = dict(train_limit=train_limit, epochs=epochs, test_limit=test_limit, batch_size=64, lr=0.05,
                        optimizer="nesterov", schedule="onecycle", val_size=ctx.pick(64, 500, 5000),
                        image_size=ctx.pick(28, None, None))   # the 8×8 digits upsampled: NiN needs 14 px
        settings.update({**_ROW_SETTINGS.get(row.network, {}), **row.settings})
        summary, trainer = train_registered(ctx, row.network, f"{table.name}-{index}", **settings)
        classes = len(trainer.data.classes)
        tested = test_limit or len(trainer.data.test)
        ours[row.label] = 1 - summary["test_top1"]
        train_errors[row.label] = 1 - trainer.history[-1]["train_top1"]
        results.append({"row": row.label, "table_error_pct": row.error, "network": row.network,
                        "our_error_pct": round(100 * ours[row.label], 2), "params": summary["params"],
                        "train_seconds": round(summary["train_seconds"], 1), "note": row.note})
    skipped = [r.label for r in table.rows if r not in rows]
    held, why = ordering_verdict(ours, table, max(tested, 1), 1 - 2 / classes, train_errors)
    data_name = "8×8 digits" if ctx.budget == "smoke" else "Fashion-MNIST"

    fig, axes = figure(1, 2)
    labels = [r["row"] for r in results]
    axes[0, 0].barh(labels, [r["table_error_pct"] for r in results])
    axes[0, 0].set(xlabel="test error, % (MNIST, the table)", title=table.source)
    axes[0, 1].barh(labels, [r["our_error_pct"] for r in results], color="tab:orange")
    axes[0, 1].set(xlabel=f"test error, % ({data_name}, here)")
    axes[0, 1].set_yticks([])
    return Outcome(
        held,
        "; ".join(f"{r['row']}: table {r['table_error_pct']:.2f} %, ours {r['our_error_pct']:.2f} %" for r in results)
        + f". {why}. {data_name} is not MNIST: only the ordering is compared, not the values."
        + (f" Not trained at this budget: {', '.join(skipped)}." if skipped else ""),
        f"{data_name}, {train_limit} training images, {epochs} epoch(s), batch 64, test on "
        f"{'all' if test_limit is None else test_limit} test images; SGD Nesterov lr 0.05 one-cycle (CapsNet: Adam "
        f"1e-3, cosine); no augmentation{precision_note(ctx)}; the Trainer's small-input stems.",
        {"rows": results, "pair": [table.better, table.worse], "skipped": skipped},
        [save_figure(fig, ctx, f"{table.name}.png")], results)


def _register(table: Table) -> None:
    claim = (f"{table.source}: {table.better} ({_error_of(table, table.better):.2f} %) has a lower error than "
             f"{table.worse} ({_error_of(table, table.worse):.2f} %); on Fashion-MNIST the same ordering")
    experiment(table.name, notes="002", heading=table.heading, claim=claim)(lambda ctx: run_table(ctx, table))


def _error_of(table: Table, label: str) -> float:
    return next(row.error for row in table.rows if row.label == label)


for _table in TABLES:
    _register(_table)


# ---- the notes' own numbers ------------------------------------------------------------------

# Inception-v3 Table 1: (kernel, stride, padding) of each row before the Inception rows, and the
# map side the table prints after each (the next row's input).
INCEPTION_V3_STEM = ((3, 2, 0, 149), (3, 1, 0, 147), (3, 1, 1, 147), (3, 2, 0, 73), (3, 1, 0, 71),
                     (3, 2, 0, 35), (3, 1, 1, 35))
# Printed parameter counts: (table, row, network, count as printed, explanation when it is a misprint).
PRINTED_COUNTS = (
    ("MobileNet Table 4", "MobileNet", "mobilenet_v1", "4.2M", None),
    ("MobileNet Table 4", "Conv MobileNet", "mobilenet_v1_conv", "29.3M", None),
    ("WRN table", "original-ResNet 110", "resnet110_cifar", "1.7M", None),
    ("WRN table", "original-ResNet 1202", "resnet1202_cifar", "10.2M",
     "pre-activation ResNet-1001's count in the wrong row: He et al. Table 6 gives 19.4M for ResNet-1202"),
    ("WRN table", "pre-act-ResNet 164", "preact_resnet164", "1.7M", None),
    ("WRN table", "pre-act-ResNet 1001", "preact_resnet1001", "10.2M", None),
    ("WRN table", "WRN-40-4", "wrn40_4", "8.9M", None),
    ("WRN table", "WRN-16-8", "wrn16_8", "11.0M", None),
    ("WRN table", "WRN-28-10", "wrn28_10", "36.5M", None),
    ("ODE-Net Table 1", "1-Layer MLP", "mlp1_mnist", "0.24M", None),
    ("ODE-Net Table 1", "ResNet", "odenet_resnet_mnist", "0.60M", None),
)
PRINTED_MACS = (("MobileNet Table 4", "MobileNet", "mobilenet_v1", "569M"),
                ("MobileNet Table 4", "Conv MobileNet", "mobilenet_v1_conv", "4866M"))
# MCDNN's summary table: (data set, best result of others %, MCDNN %, relative improvement % as printed).
MCDNN_IMPROVEMENTS = (("MNIST", 0.39, 0.23, 41), ("HWDB1.0 on.", 7.61, 5.61, 26), ("HWDB1.0 off.", 10.01, 6.5, 35),
                      ("CIFAR10", 18.50, 11.21, 39), ("traffic signs", 1.69, 0.54, 72), ("NORB", 5.00, 2.70, 46))


def compression_rate(n: int, bits: int, clusters: int) -> float:
    """Deep Compression Sec. 3: r = nb / (n log₂ k + kb)."""
    return n * bits / (n * math.log2(clusters) + clusters * bits)


def _conv_side(side: int, kernel: int, stride: int, padding: int) -> int:
    return (side + 2 * padding - kernel) // stride + 1


def _inception_sides() -> list[int]:
    with torch.device("meta"):
        model = registry.create_model("inception_v3_paper", aux_logits=False).eval()
        x, sides = torch.empty(1, 3, 299, 299), []
        for name in model.stage_names[:7]:
            x = getattr(model, name)(x)
            sides.append(x.shape[-1])
    return sides


@experiment("notes-numbers", notes="002", heading="Rethinking the Inception Architecture for Computer Vision",
            claim="the numbers the notes print — Inception-v3's map sides, MobileNet's and the WRN/ODE-Net tables' "
                  "parameter and multiply-add counts, MCDNN's relative improvements, Deep Compression's "
                  "compression rate — follow from the networks and formulas, or are misprints we can name")
def notes_numbers(ctx: Context) -> Outcome:
    rows = []
    side, formula = 299, []
    for kernel, stride, padding, _ in INCEPTION_V3_STEM:
        side = _conv_side(side, kernel, stride, padding)
        formula.append(side)
    model_sides = _inception_sides()
    for (kernel, stride, padding, printed), computed, measured in zip(INCEPTION_V3_STEM, formula, model_sides):
        rows.append({"source": "Inception-v3 Table 1", "item": f"{kernel}×{kernel}/{stride} pad {padding} output side",
                     "printed": printed, "recomputed": f"{computed} (inception_v3_paper: {measured})",
                     "agrees": printed == computed == measured, "misprint": None})
    available = set(registry.list_models())
    counts = [c for c in PRINTED_COUNTS if c[2] in available]
    if ctx.budget == "smoke":   # measuring the 1000-layer networks takes tens of seconds
        counts = [c for c in counts if "1202" not in c[1] and "1001" not in c[1]]
    cards = {card["name"]: card for card in registry.model_cards(sorted({c[2] for c in counts}
                                                                          | {m[2] for m in PRINTED_MACS}))}
    for source, row, network, printed, misprint in counts:
        value, rounding = registry.parse_figure(printed)
        measured = cards[network]["params"]
        rows.append({"source": source, "item": f"{row} parameters ({network})", "printed": printed,
                     "recomputed": f"{measured / 1e6:.2f}M",
                     "agrees": abs(measured - value) <= max(registry.PARAM_TOLERANCE * value, rounding),
                     "misprint": misprint})
    for source, row, network, printed in PRINTED_MACS:
        value, rounding = registry.parse_figure(printed)
        measured = cards[network]["macs"]
        rows.append({"source": source, "item": f"{row} multiply-adds ({network})", "printed": printed,
                     "recomputed": f"{measured / 1e6:.0f}M",
                     "agrees": abs(measured - value) <= max(registry.MAC_TOLERANCE * value, rounding),
                     "misprint": None})
    for data_set, others, mcdnn, printed in MCDNN_IMPROVEMENTS:
        computed = 100 * (others - mcdnn) / others
        misprint = ("the paper's table prints 72 %; its own errors (1.69 %, 0.54 %) give 68 %"
                    if data_set == "traffic signs" else None)
        rows.append({"source": "MCDNN summary table", "item": f"{data_set} relative improvement %", "printed": printed,
                     "recomputed": f"{computed:.1f}", "agrees": round(computed) == printed, "misprint": misprint})
    rate = compression_rate(16, 32, 4)
    rows.append({"source": "Deep Compression (notes 000)", "item": "r for the 4×4 matrix, 4 clusters, 32-bit weights",
                 "printed": "3.2 (the paper's 16·32 / (4·32 + 2·16))", "recomputed": f"{rate:.2f}",
                 "agrees": math.isclose(rate, 3.2), "misprint": None})

    unexplained = [r for r in rows if not r["agrees"] and not r["misprint"]]
    misprints = [r for r in rows if not r["agrees"] and r["misprint"]]
    sources = list(dict.fromkeys(r["source"] for r in rows))
    fig, axes = figure(1, 1, width=7.5, height=0.45 * len(sources) + 1.5)
    left = [0] * len(sources)
    for kind, colour, test in (("recomputed", "tab:green", lambda r: r["agrees"]),
                               ("misprint named", "tab:orange", lambda r: not r["agrees"] and r["misprint"]),
                               ("unexplained", "tab:red", lambda r: not r["agrees"] and not r["misprint"])):
        counts = [sum(1 for r in rows if r["source"] == source and test(r)) for source in sources]
        axes[0, 0].barh(sources, counts, left=left, color=colour, label=kind)
        left = [a + b for a, b in zip(left, counts)]
    axes[0, 0].set(xlabel="printed numbers", title="the notes' numbers, recomputed")
    axes[0, 0].xaxis.get_major_locator().set_params(integer=True)
    axes[0, 0].legend(fontsize=8)
    return Outcome(
        verdict(not unexplained),
        f"{sum(r['agrees'] for r in rows)} of {len(rows)} printed numbers recomputed exactly (within their rounding). "
        + (f"Misprints named: {'; '.join(r['item'] + ' — ' + r['misprint'] for r in misprints)}. " if misprints else "")
        + (f"Unexplained: {'; '.join(r['item'] + ' printed ' + str(r['printed']) + ', ' + r['recomputed'] for r in unexplained)}."
           if unexplained else "No unexplained difference."),
        "No training: the output-size formula ⌊(n + 2p − k)/s⌋ + 1, the zoo's networks measured on the meta device "
        "(parameters; multiply-adds at the paper's input size), and the formulas of the notes."
        + (" The smoke budget skips the 1000-layer networks' counts." if ctx.budget == "smoke" else ""),
        {"rows": rows}, [save_figure(fig, ctx, "notes-numbers.png")], rows)
