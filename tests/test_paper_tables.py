"""The notes' tables against the zoo (issue 26, items 11 and 12): Inception-v3's Table 1 row by row,
MobileNet v1's shapes column, ResNet-1202's parameter count, Deep Compression's centroid update,
and the `visionzoo reproduce` experiments of experiments/paper_tables.py at a tiny budget."""
import dataclasses

import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.compress.pipeline import Options, finetune_settings
from visionzoo.core.profile import count_params

# Inception-v3, Table 1 (notes 001 and 002, "Rethinking the Inception Architecture"): each row's
# input size (H, W, C) and the first stage of ours that row is; the softmax row's input is the logits.
INCEPTION_V3_TABLE1 = (
    ("conv 3×3/2", "Conv2d_1a_3x3", (299, 299, 3)),
    ("conv 3×3/1", "Conv2d_2a_3x3", (149, 149, 32)),
    ("conv padded 3×3/1", "Conv2d_2b_3x3", (147, 147, 32)),
    ("pool 3×3/2", "maxpool1", (147, 147, 64)),
    ("conv 3×3/1", "Conv2d_3a_3x3", (73, 73, 64)),
    ("conv 3×3/2", "Conv2d_3b_3x3", (71, 71, 80)),
    ("conv 3×3/1", "Conv2d_4a_3x3", (35, 35, 192)),
    ("3 × Inception (Fig. 5)", "Mixed_5b", (35, 35, 288)),
    ("5 × Inception (Fig. 6)", "Mixed_6b", (17, 17, 768)),
    ("2 × Inception (Fig. 7)", "Mixed_7b", (8, 8, 1280)),
    ("pool 8×8", "head", (8, 8, 2048)),
    ("linear", "fc", (1, 1, 2048)),
)


def _inputs_of(model, names, x):
    """The (H, W, C) of the input each named module receives in one forward pass ('head': the map
    the head pools)."""
    seen = {}

    def record(name):
        def hook(module, args):
            shape = args[0].shape
            seen[name] = (1, 1, shape[1]) if len(shape) == 2 else (shape[2], shape[3], shape[1])
        return hook

    handles = [model.get_submodule(n).register_forward_pre_hook(record(n)) for n in names if n != "head"]
    features = model.forward_features(x)
    seen["head"] = (features.shape[2], features.shape[3], features.shape[1])
    logits = model.forward_head(features)
    for handle in handles:
        handle.remove()
    return seen, logits


def test_inception_v3_paper_follows_table1_row_by_row():
    with torch.device("meta"):
        model = vz.create_model("inception_v3_paper", aux_logits=False).eval()
        seen, logits = _inputs_of(model, [stage for _, stage, _ in INCEPTION_V3_TABLE1],
                                  torch.empty(1, 3, 299, 299))
    for row, stage, size in INCEPTION_V3_TABLE1:
        assert seen[stage] == size, f"Table 1 row {row!r}: input {seen[stage]}, table {size}"
    assert tuple(logits.shape) == (1, 1000)   # the softmax row's input, 1 × 1 × 1000
    # the table's repeats: 3, 5 and 2 Inception modules on the 35, 17 and 8 grids
    assert [s for s in model.stage_names if s.startswith("Mixed_5")] == ["Mixed_5b", "Mixed_5c", "Mixed_5d"]
    assert len([s for s in model.stage_names if s.startswith("Mixed_6")]) == 1 + 5   # reduction + 5
    assert len([s for s in model.stage_names if s.startswith("Mixed_7")]) == 1 + 2


def test_inception_v3_paper_map_sides_are_the_tables():
    """The side of each row's output: 299 → 149 → 147 → 147 → 73 → 71 → 35 → 35 → 17 → 8 (→ 8) → 1,
    an Inception row ending where the next row's grid starts (its grid reduction included)."""
    row_ends = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3a_3x3",
                "Conv2d_3b_3x3", "Conv2d_4a_3x3", "Mixed_6a", "Mixed_7a", "Mixed_7c")
    with torch.device("meta"):
        model = vz.create_model("inception_v3_paper", aux_logits=False).eval()
        x, sides = torch.empty(1, 3, 299, 299), [299]
        for name in model.stage_names:
            x = getattr(model, name)(x)
            if name in row_ends:
                sides.append(x.shape[-1])
        sides.append(model.forward_head(x, pre_logits=True)[..., None, None].shape[-1])
    assert sides == [299, 149, 147, 147, 73, 71, 35, 35, 17, 8, 8, 1]


def test_released_inception_v3_differs_from_table1_where_the_docstring_says():
    with torch.device("meta"):
        released = vz.create_model("inception_v3", aux_logits=False)
        paper = vz.create_model("inception_v3_paper", aux_logits=False)
    assert released.Conv2d_3b_1x1.conv.kernel_size == (1, 1) and released.Conv2d_3b_1x1.conv.out_channels == 80
    assert released.Conv2d_4a_3x3.conv.out_channels == 192 and isinstance(released.maxpool2, nn.MaxPool2d)
    assert paper.Conv2d_4a_3x3.conv.out_channels == 288 and paper.Conv2d_4a_3x3.conv.padding == (1, 1)
    assert len([s for s in released.stage_names if s.startswith("Mixed_6")]) == 1 + 4
    assert [s for s in released.stage_names if s.startswith("Mixed_7")] == ["Mixed_7a", "Mixed_7b", "Mixed_7c"]


# MobileNet v1, Table 1's "Input Size" column: (H, W, C) into each layer, stem first, then the
# depthwise and the pointwise convolution of each of the 13 separable layers.
MOBILENET_V1_TABLE1 = (
    (224, 224, 3),
    (112, 112, 32), (112, 112, 32), (112, 112, 64), (56, 56, 64), (56, 56, 128), (56, 56, 128),
    (56, 56, 128), (28, 28, 128), (28, 28, 256), (28, 28, 256), (28, 28, 256), (14, 14, 256),
    *((14, 14, 512),) * 10,
    (14, 14, 512), (7, 7, 512), (7, 7, 1024), (7, 7, 1024),
)


def test_mobilenet_v1_layers_follow_table1_shapes_column():
    with torch.device("meta"):
        model = vz.create_model("mobilenet_v1").eval()
    modules = [model.features[0]]
    for layer in model.features[1:]:
        modules += [layer.depthwise, layer.pointwise]
    seen = []
    handles = [m.register_forward_pre_hook(lambda m, a: seen.append((a[0].shape[2], a[0].shape[3], a[0].shape[1])))
               for m in modules]
    with torch.device("meta"):
        features = model.forward_features(torch.empty(1, 3, 224, 224))
    for handle in handles:
        handle.remove()
    assert seen == list(MOBILENET_V1_TABLE1)
    # the "Avg Pool 7×7" row's input: the last depthwise layer has stride 1 (the table's "s2" is a typo)
    assert tuple(features.shape[1:]) == (1024, 7, 7)
    assert model.features[-1].depthwise[0].stride == (1, 1)


def _basic_cifar_resnet_params(depth: int, widths=(16, 32, 64), classes: int = 10) -> int:
    """He et al. Sec. 4.2's 6n + 2 network by its definition: a 3×3 stem, n basic blocks (two 3×3
    convolutions, BN after each) per stage, option-A shortcuts (no weights), an fc layer."""
    n = (depth - 2) // 6
    total = 3 * widths[0] * 9 + 2 * widths[0]           # stem conv (no bias) and its BN
    cin = widths[0]
    for width in widths:
        for _ in range(n):
            total += 9 * cin * width + 9 * width * width + 2 * 2 * width
            cin = width
    return total + widths[-1] * classes + classes


@pytest.mark.slow   # building the 1000-layer networks: 25 s on a busy 2-core CPU
def test_resnet1202_has_he_et_al_19_4m_and_the_wrn_tables_10_2m_is_resnet1001s():
    with torch.device("meta"):
        resnet1202 = count_params(vz.create_model("resnet1202_cifar"))
        preact1001 = count_params(vz.create_model("preact_resnet1001"))
    assert resnet1202 == _basic_cifar_resnet_params(1202)
    assert round(resnet1202 / 1e6, 1) == 19.4            # He et al. Table 6
    assert abs(preact1001 / 10.2e6 - 1) < 0.02   # He et al. 2016b's 10.2M: conv and fc weights, BN adds 0.15M
    # no bottleneck CIFAR ResNet (9n + 2 layers) has 1202 layers, so 10.2M cannot be a 1202-layer net's
    assert (1202 - 2) % 9 != 0


def test_centroid_finetuning_defaults_to_plain_sgd_and_keeps_adamw():
    sgd = finetune_settings(Options())
    assert (sgd.optimizer, sgd.momentum, sgd.weight_decay) == ("sgd", 0.0, 0.0)
    adamw = finetune_settings(dataclasses.replace(Options(), finetune_optimizer="adamw"))
    assert adamw.optimizer == "adamw"


@pytest.mark.parametrize("lr", [0.1, 0.01])
def test_deep_compression_centroid_update_is_minus_lr_times_the_cluster_gradient_sum(lr):
    """Sec. 3.3: ∂L/∂C_k = Σ_{i,j} ∂L/∂W_ij · 1(I_ij = k); with plain SGD, C_k ← C_k − lr · that sum."""
    from visionzoo.compress import quantize
    torch.manual_seed(1)
    linear = nn.Linear(6, 3, bias=False)
    model = nn.Sequential(linear)
    shared = quantize.share_weights(model, 2, 2)
    hook = quantize.CentroidHook(model, shared)
    codes = shared["0"].codes
    centroids = torch.zeros(4).scatter_(0, codes.flatten(), linear.weight.detach().flatten())
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model(torch.randn(5, 6)).pow(3).sum().backward()
    per_cluster = torch.zeros(4).index_add_(0, codes.flatten(), linear.weight.grad.flatten())
    hook.after_backward(None)
    optimizer.step()
    torch.testing.assert_close(linear.weight.detach(), (centroids - lr * per_cluster)[codes])


# ---- experiments/paper_tables.py ---------------------------------------------------------------

def test_ordering_verdict_follows_the_standard_error_of_the_difference():
    from visionzoo.experiments.base import HELD, INCONCLUSIVE, NOT_HELD
    from visionzoo.experiments.paper_tables import TABLES, ordering_verdict
    table = TABLES[0]
    margin = 2 * (2 * 0.1 * 0.9 / 1000) ** 0.5   # two error rates near 0.1 on 1000 images
    assert ordering_verdict({table.better: 0.10, table.worse: 0.10 + 1.5 * margin}, table, 1000, 0.8)[0] == HELD
    assert ordering_verdict({table.better: 0.10 + 1.5 * margin, table.worse: 0.10}, table, 1000, 0.8)[0] == NOT_HELD
    assert ordering_verdict({table.better: 0.10, table.worse: 0.10 + 0.5 * margin}, table, 1000, 0.8)[0] == INCONCLUSIVE
    # a network at chance says nothing about the ordering
    assert ordering_verdict({table.better: 0.10, table.worse: 0.85}, table, 1000, 0.8)[0] == INCONCLUSIVE
    # nor does one that has not fitted its training set (odenet-table's quick budget: ODE-Nets at 0.33)
    errors = {table.better: 0.10 + 1.5 * margin, table.worse: 0.10}
    unfitted = ordering_verdict(errors, table, 1000, 0.8, {table.better: 0.35, table.worse: 0.05})
    assert unfitted[0] == INCONCLUSIVE and "not fitted" in unfitted[1]
    assert ordering_verdict(errors, table, 1000, 0.8, {table.better: 0.2, table.worse: 0.05})[0] == NOT_HELD


def test_compression_rate_is_the_papers_example():
    from visionzoo.experiments.paper_tables import compression_rate
    assert compression_rate(16, 32, 4) == pytest.approx(16 * 32 / (4 * 32 + 2 * 16))   # 3.2
    assert compression_rate(1000, 32, 2 ** 5) == pytest.approx(32000 / (1000 * 5 + 32 * 32))


@pytest.mark.slow   # 25 s on a busy 2-core CPU (data loading and three short Trainer runs)
def test_table_experiment_builds_its_table_at_a_tiny_budget(tmp_path):
    from visionzoo.experiments.base import HELD, INCONCLUSIVE, NOT_HELD, Context, get_experiment
    outcome = get_experiment("mcdnn-table").run(Context("smoke", tmp_path, 0, quiet=True))
    assert outcome.verdict in (HELD, NOT_HELD, INCONCLUSIVE)
    assert [row["row"] for row in outcome.table] == ["MCDNN (this)", "CNN [26]", "MLP [5]"]
    assert [row["table_error_pct"] for row in outcome.table] == [0.23, 0.39, 0.35]
    assert all(0 <= row["our_error_pct"] <= 100 and row["params"] > 0 for row in outcome.table)
    assert (tmp_path / "mcdnn-table.png").exists()


@pytest.mark.slow   # measures a dozen model cards: ~17 s on a busy 2-core CPU, more with a cold card cache
def test_notes_numbers_recomputes_the_printed_numbers(tmp_path):
    from visionzoo.experiments.base import HELD, Context, get_experiment
    outcome = get_experiment("notes-numbers").run(Context("smoke", tmp_path, 0, quiet=True))
    rows = {(row["source"], row["item"]): row for row in outcome.table}
    assert outcome.verdict == HELD
    assert all(row["agrees"] for (source, _), row in rows.items() if source == "Inception-v3 Table 1")
    traffic = rows[("MCDNN summary table", "traffic signs relative improvement %")]
    assert not traffic["agrees"] and traffic["misprint"]
