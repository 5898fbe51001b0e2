"""Compression toolkit: each method by its defining property, the file format, the CLI end to end."""
import copy
import heapq
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.compress import channels, huffman, prune, quantize, sparse
from visionzoo.compress.binarize import binary_layer_names, materialize
from visionzoo.compress.fileformat import LayerCoding, load_compressed, save_compressed
from visionzoo.compress.pipeline import compression_rate
from visionzoo.compress.retrain import RetrainSettings, retrain
from visionzoo.core.errors import UsageError
from visionzoo.layers.binary import binarize
from visionzoo.weights import load_checkpoint

from conftest import assert_one_line_exit_2, cli_here

META = {"name": "lenet", "kwargs": {"num_classes": 10, "in_chans": 1}, "input_size": [1, 28, 28]}


def lenet(seed=0):
    torch.manual_seed(seed)
    return vz.create_model("lenet", num_classes=10, in_chans=1).eval()


def images(n=4, seed=1):
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """LeNet trained for one epoch on scikit-learn's digits, upsampled to 16×16."""
    from visionzoo.engine.trainer import train
    out = tmp_path_factory.mktemp("compress") / "run"
    train(model="lenet", data="digits", image_size=16, epochs=1, batch_size=64, lr=0.05, train_limit=640,
          out=str(out), quiet=True)
    return out


@pytest.mark.parametrize("sparsity", [0.0, 0.37, 0.9, 0.999])
def test_magnitude_pruning_removes_exactly_the_smallest_weights(sparsity):
    model = lenet()
    before = {n: m.weight.detach().clone() for n, m in prune.weight_layers(model).items()}
    masks = prune.prune(model, prune.resolve_targets(model, sparsity))
    for name, layer in prune.weight_layers(model).items():
        n = layer.weight.numel()
        assert int((layer.weight == 0).sum()) == round(sparsity * n)
        kept, removed = before[name][masks[name]].abs(), before[name][~masks[name]].abs()
        if len(removed) and len(kept):
            assert removed.max() <= kept.min()


def test_iterative_schedule_and_dropout_ratio_adjustment():
    steps = prune.schedule({"a": 0.91}, 2)
    assert steps[0]["a"] == pytest.approx(0.7) and steps[1]["a"] == pytest.approx(0.91)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Dropout(0.5), nn.Linear(30, 10))
    original, connections = prune.dropout_ratios(model), {"0": 600, "3": 300}
    prune.prune(model, {"3": 0.75})
    adjusted = prune.adjust_dropout(model, original, connections)
    assert adjusted == {"2": pytest.approx(0.5 * math.sqrt(75 / 300))}
    assert model[2].p == adjusted["2"]


def test_sensitivity_scan_prunes_one_layer_at_a_time_and_puts_it_back():
    model = lenet()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def zero_fractions(network):  # stands in for accuracy: what each evaluation saw
        return {n: (m.weight == 0).float().mean().item() for n, m in prune.weight_layers(network).items()}
    curves = prune.sensitivity_scan(model, zero_fractions, [0.0, 0.5, 0.9])
    assert list(curves) == ["features.0", "features.3", "fc1.0", "fc2"]
    for name, seen in curves.items():
        for sparsity, fractions in zip([0.0, 0.5, 0.9], seen):
            assert fractions[name] == pytest.approx(sparsity, abs=1e-3)
            assert all(value == 0 for other, value in fractions.items() if other != name)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_masks_survive_retraining_with_the_trainer(run_dir):
    model, meta = load_checkpoint(run_dir)
    before = {n: m.weight.detach().clone() for n, m in prune.weight_layers(model).items()}
    masks = prune.prune(model, prune.resolve_targets(model, 0.8))
    history = retrain(model, meta, RetrainSettings(epochs=1, train_limit=256, batch_size=64, lr=0.05, device="cpu"),
                      [prune.MaskHook(model, masks)])
    assert len(history) == 1
    for name, layer in prune.weight_layers(model).items():
        assert torch.count_nonzero(layer.weight[~masks[name]]) == 0
        assert not torch.equal(layer.weight[masks[name]], before[name][masks[name]])  # the rest trained


@pytest.mark.parametrize("init", quantize.INITS)
def test_kmeans_shares_at_most_k_values_each_at_its_nearest_centroid(init):
    values = torch.randn(5000, generator=torch.Generator().manual_seed(0))
    centroids, labels = quantize.kmeans_1d(values, 16, init)
    assert len(centroids) == 16 and labels.unique().numel() <= 16
    assert torch.equal(labels, quantize.nearest(values.double(), centroids))
    used = labels.unique()  # a converged Lloyd step: each used centroid is its cluster's mean
    means = torch.stack([values.double()[labels == c].mean() for c in used])
    torch.testing.assert_close(centroids[used], means)


def test_weight_sharing_gives_exactly_k_values_per_layer_and_keeps_pruned_zeros():
    model = lenet()
    masks = prune.prune(model, {"fc1.0": 0.9, "fc2": 0.5})
    shared = quantize.share_weights(model, conv_bits=4, fc_bits=3, init="density", masks=masks)
    for name, layer in prune.weight_layers(model).items():
        bits = 4 if isinstance(layer, nn.Conv2d) else 3
        assert layer.weight.unique().numel() == 2 ** bits == len(shared[name].codebook)
        if name in masks:
            assert torch.count_nonzero(layer.weight[~masks[name]]) == 0 and shared[name].reserved_zero


def test_centroid_gradient_is_the_sum_over_its_cluster():
    model = lenet()
    masks = prune.prune(model, {"fc2": 0.5})
    shared = quantize.share_weights(model, 3, 3, masks=masks)
    hook = quantize.CentroidHook(model, shared)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    weight, codes = model.fc2.weight, shared["fc2"].codes
    model(images()).square().mean().backward()
    raw = weight.grad.clone()
    hook.after_backward(None)
    optimizer.step()
    expected = shared["fc2"].codebook - 0.1 * torch.zeros(8).index_add_(0, codes.flatten(), raw.flatten())
    expected[0] = 0  # the pruned value stays 0
    torch.testing.assert_close(weight.detach(), expected[codes])
    assert weight.unique().numel() <= 8


def test_huffman_round_trips_and_is_a_complete_prefix_code():
    rng = np.random.default_rng(0)
    for symbols in (rng.geometric(0.2, 20000).clip(max=255) - 1, np.full(37, 5), rng.integers(0, 32, 999)):
        lengths = huffman.code_lengths(np.bincount(symbols, minlength=256))
        assert np.array_equal(huffman.huffman_decode(huffman.huffman_encode(symbols, lengths), lengths,
                                                     len(symbols)), symbols)
        if (lengths > 0).sum() > 1:
            assert sum(2.0 ** -lengths[lengths > 0]) == 1.0  # Kraft equality: nothing wasted
    fibonacci = [1, 1]
    while len(fibonacci) < 30:
        fibonacci.append(fibonacci[-1] + fibonacci[-2])
    lengths = huffman.code_lengths(fibonacci)
    assert lengths.max() <= huffman.MAX_CODE_BITS
    symbols = rng.integers(0, 30, 500)
    assert np.array_equal(huffman.huffman_decode(huffman.huffman_encode(symbols, lengths), lengths, 500), symbols)
    values = rng.integers(0, 32, 101)
    assert np.array_equal(huffman.unpack_fixed(huffman.pack_fixed(values, 5), 5, 101), values)


def merge_cost(counts):
    """Σ of the weights merged by the textbook Huffman construction: the least Σ nᵢℓᵢ of any prefix code."""
    heap = [int(c) for c in counts if c > 0]
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        cost += merged
        heapq.heappush(heap, merged)
    return cost


def _fibonacci(n):
    numbers = [1, 1]
    while len(numbers) < n:
        numbers.append(numbers[-1] + numbers[-2])
    return numbers


@pytest.mark.parametrize("counts, fixed_is_optimal", [
    pytest.param(np.bincount(np.random.default_rng(0).geometric(0.3, 5000) - 1), False, id="geometric"),
    pytest.param([64, 32, 16, 8, 4, 2, 1, 1], False, id="dyadic"),         # L̄ = H exactly
    pytest.param([0, 7, 0, 0, 3, 1, 0, 12, 2, 0], False, id="gaps"),
    pytest.param(np.random.default_rng(1).integers(1, 1000, 40), False, id="random40"),
    pytest.param(_fibonacci(17), False, id="fibonacci17"),                  # depth 16 = MAX_CODE_BITS: no cap binds
    pytest.param([5] * 8, True, id="uniform"),
    pytest.param([1, 1000], True, id="two"),
])
def test_huffman_lengths_are_optimal_and_within_one_bit_of_the_entropy(counts, fixed_is_optimal):
    counts = np.asarray(counts, dtype=np.int64)
    lengths = huffman.code_lengths(counts)
    assert np.array_equal(lengths > 0, counts > 0) and lengths.max() <= huffman.MAX_CODE_BITS
    total = int((counts * lengths).sum())
    assert total == merge_cost(counts)  # Σ nᵢℓᵢ of the optimal code
    p = counts[counts > 0] / counts.sum()
    entropy = float(-(p * np.log2(p)).sum())
    assert entropy - 1e-12 <= total / counts.sum() < entropy + 1
    # the fixed-length code is complete and prefix-free too, but on skewed counts it costs more
    fixed = math.ceil(math.log2((counts > 0).sum())) * int(counts.sum())
    assert (total == fixed) if fixed_is_optimal else (total < fixed)


def test_relative_indices_put_filler_zeros_where_the_notes_do():
    row = np.zeros((1, 16), dtype=np.float32)
    row[0, [1, 4, 15]] = [3.4, 0.9, 1.7]
    encoded = sparse.relative_csr(row, index_bits=3)  # span 8 = 2^3
    positions = np.cumsum(encoded.gaps) - 1
    assert positions.tolist() == [1, 4, 12, 15] and encoded.values[2] == 0 and encoded.fillers == 1
    assert np.array_equal(sparse.from_relative_csr(encoded), row)


@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_csr_with_relative_indices_round_trips_including_long_gaps(bits):
    rng = np.random.default_rng(bits)
    matrix = rng.normal(size=(23, 700)).astype(np.float32) * (rng.random((23, 700)) < 0.03)
    matrix[5] = 0
    matrix[7, -1] = 1.5  # a gap of ~700 from the row start
    encoded = sparse.relative_csr(matrix, bits)
    assert encoded.gaps.min() >= 1 and encoded.gaps.max() <= 2 ** bits
    assert np.array_equal(sparse.from_relative_csr(encoded), matrix)
    values, columns, pointers = sparse.csr(matrix)
    nonzeros = np.count_nonzero(matrix)
    assert len(values) + len(columns) + len(pointers) == 2 * nonzeros + matrix.shape[0] + 1
    assert np.array_equal(sparse.from_csr(values, columns, pointers, matrix.shape), matrix)
    values, rows, pointers = sparse.csc(matrix)
    assert np.array_equal(sparse.from_csr(values, rows, pointers, matrix.T.shape).T, matrix)


@pytest.mark.parametrize("bits", [2, 4, 5])
def test_compression_rate_formula_equals_the_bytes_written(tmp_path, bits):
    model = nn.Sequential(nn.Linear(64, 32, bias=False))
    quantize.share_weights(model, fc_bits=bits, init="density")
    descriptors = save_compressed(tmp_path / "m.vzc", model, META,
                                  {"0": LayerCoding("shared", bits=bits, huffman=False)})
    n, k = 64 * 32, 2 ** bits
    stored = descriptors[0]["bytes"]
    assert stored == n * bits // 8 + 4 * k
    assert compression_rate(n, k) == pytest.approx(4 * n / stored, rel=1e-12)


def _assert_reloads_identically(tmp_path, model, codings, transforms=()):
    x = images()
    with torch.no_grad():
        expected = model.eval()(x)
    save_compressed(tmp_path / "model.vzc", model, META, codings, list(transforms))
    loaded, meta = load_compressed(tmp_path)
    assert meta == META
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


@pytest.mark.parametrize("use_huffman", [True, False])
def test_deep_compressed_file_loads_back_to_identical_logits(tmp_path, use_huffman):
    model = lenet()
    masks = prune.prune(model, {"features.0": 0.3, "features.3": 0.8, "fc1.0": 0.97, "fc2": 0.8})
    quantize.share_weights(model, 8, 5, masks=masks)
    codings = {n: LayerCoding("shared", sparse=True, bits=8 if n.startswith("features") else 5,
                              index_bits=8 if n.startswith("features") else 5, huffman=use_huffman)
               for n in masks}
    _assert_reloads_identically(tmp_path, model, codings)


def test_pruned_file_loads_back_to_identical_logits(tmp_path):
    model = lenet()
    prune.prune(model, prune.resolve_targets(model, 0.95))
    _assert_reloads_identically(tmp_path, model, {n: LayerCoding("sparse", sparse=True, index_bits=4)
                                                  for n in prune.weight_layers(model)})


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_binarised_weights_are_plus_minus_alpha_per_output_channel(tmp_path, mode):
    model = lenet()
    binarize(model, mode)
    names = binary_layer_names(model)
    assert names == ["features.3", "fc1.0"]  # all but the first and the last weight layer
    latent = {n: model.get_submodule(n).weight.detach().clone() for n in names}
    materialize(model)
    for name in names:
        weight = model.get_submodule(name).weight.detach().flatten(1)
        alpha = latent[name].flatten(1).abs().mean(1, keepdim=True)
        torch.testing.assert_close(weight.abs(), alpha.expand_as(weight))
        assert torch.equal(weight > 0, latent[name].flatten(1) >= 0)
        assert all(row.unique().numel() <= 2 for row in weight)
    _assert_reloads_identically(tmp_path, model, {n: LayerCoding("binary") for n in names}, [["binarize", mode]])


def test_channel_removal_gives_smaller_tensors_and_the_same_outputs_when_the_removed_were_zero(tmp_path):
    model = lenet()
    with torch.no_grad():  # half of each conv's filters are zero: those are the smallest ℓ1 norms
        for conv, removed in ((model.features[0], slice(None, None, 2)), (model.features[3], slice(0, 25))):
            conv.weight[removed] = 0
            conv.bias[removed] = 0
    x = images()
    with torch.no_grad():
        expected = model(x)
    macs_before, params_before = vz.count_macs(model, (1, 28, 28)), vz.count_params(model)
    plan = channels.prune_channels(model, 0.5, (1, 28, 28))
    assert [p[:3] for p in plan] == [["features.0", [], "features.3"], ["features.3", [], "fc1.0"]]
    assert model.features[0].weight.shape == (10, 1, 5, 5) and model.features[3].weight.shape == (25, 10, 5, 5)
    assert model.fc1[0].weight.shape == (500, 25 * 16)
    assert vz.count_macs(model, (1, 28, 28)) < macs_before / 2 and vz.count_params(model) < params_before / 2
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)
    _assert_reloads_identically(tmp_path, model, {}, [["channels", plan]])


def test_channel_removal_through_batch_norms_spares_the_convolutions_feeding_a_residual_sum():
    torch.manual_seed(0)
    model = vz.create_model("resnet20_cifar", num_classes=10).eval()
    g = torch.Generator().manual_seed(2)
    blocks = [f"layer{stage}.{i}" for stage in (1, 2, 3) for i in range(3)]
    removed = {}
    with torch.no_grad():
        for norm in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):  # trained-looking statistics
            norm.weight.uniform_(0.5, 1.5, generator=g)
            norm.bias.normal_(generator=g)
            norm.running_mean.normal_(generator=g)
            norm.running_var.uniform_(0.5, 2.0, generator=g)
        for name in blocks:  # half of each block's first filters, scattered, are zero, and BN(0) = 0 there
            block = model.get_submodule(name)
            width = block.conv1.out_channels
            removed[name] = torch.randperm(width, generator=g)[:width // 2]
            block.conv1.weight[removed[name]] = 0
            block.bn1.running_mean[removed[name]] = 0
            block.bn1.bias[removed[name]] = 0
    reference = copy.deepcopy(model)
    x = torch.randn(2, 3, 8, 8, generator=g)
    with torch.no_grad():
        expected = model(x)
    plan = channels.prune_channels(model, 0.5, (3, 8, 8))
    # the stem and every block's second convolution feed a residual sum: their widths stay
    assert plan == [[f"{b}.conv1", [f"{b}.bn1"], f"{b}.conv2", model.get_submodule(b).conv2.out_channels // 2]
                    for b in blocks]
    for name in blocks:
        block, before = model.get_submodule(name), reference.get_submodule(name)
        kept = torch.tensor(sorted(set(range(before.conv1.out_channels)) - set(removed[name].tolist())))
        assert torch.equal(block.conv1.weight, before.conv1.weight[kept])
        assert block.bn1.num_features == len(kept)
        for attribute in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(block.bn1, attribute), getattr(before.bn1, attribute)[kept]), attribute
        assert torch.equal(block.conv2.weight, before.conv2.weight[:, kept])
        assert block.conv2.weight.shape == before.conv2.weight.shape[:1] + (len(kept),) + (3, 3)
        assert block.bn2.num_features == before.bn2.num_features
    assert vz.count_params(model) < 0.6 * vz.count_params(reference)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
        fresh = vz.create_model("resnet20_cifar", num_classes=10).eval()
        channels.set_widths(fresh, plan)  # the plan replays on a new network, batch norms included
        fresh.load_state_dict(model.state_dict())
        assert torch.equal(fresh(x), model(x))


def test_channel_removal_refuses_networks_without_a_removable_convolution():
    with pytest.raises(UsageError, match="no convolution"):
        channels.prune_channels(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), 0.5, (1, 2, 2))


def test_compress_cli_end_to_end_and_eval_reads_the_compressed_model(run_dir, tmp_path, capsys):
    from visionzoo.cli.main import main
    out = tmp_path / "deep"
    code = main(["compress", str(run_dir), "--method", "deep", "--sparsity", "0.8", "--epochs", "1",
                 "--train-limit", "256", "--finetune-epochs", "1", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)   # stdout is the JSON alone; the retraining's progress is on stderr
    assert "epoch   1/1  train loss" in captured.err
    for key in ("method", "params", "nonzero", "sparsity", "top1_before", "top1_after", "bytes_before", "bytes_after"):
        assert key in report
    assert report["sparsity"] == pytest.approx(0.8 * 430500 / 431080, abs=1e-3)  # weights pruned, biases kept
    assert report["bytes_after"] == (out / "model.vzc").stat().st_size < report["bytes_before"] / 10
    assert {"compress.json", "layers.png", "curves.png", "weights.png", "model.vzc"} <= {p.name for p in out.iterdir()}
    written = json.loads((out / "compress.json").read_text())
    layers = written["layers"]
    assert [row["layer"] for row in layers] == ["features.0", "features.3", "fc1.0", "fc2"]
    assert all(row["distinct_values"] <= 2 ** (8 if row["type"] == "Conv2d" else 5) for row in layers)
    # the plotted codebook is the layer's: its fine-tuned centroids are exactly the non-zero values stored
    decoded, _ = load_checkpoint(out)
    for name, book in written["details"]["codebooks"].items():
        weight = decoded.get_submodule(name).weight.detach()
        assert sorted(book["final"][1:]) == pytest.approx(weight[weight != 0].unique().tolist())
        assert len(book["initial"]) == len(book["final"]) and sum(book["histogram"]["counts"]) == \
            int((weight != 0).sum())
    assert main(["eval", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == report["top1_after"]


def test_distill_trains_a_smaller_student_on_the_teachers_soft_targets(run_dir, tmp_path, capsys):
    from visionzoo.cli.main import main
    out = tmp_path / "student"
    code = main(["compress", str(run_dir), "--method", "distill", "--student", "lenet5", "--temperature", "3",
                 "--alpha", "0.7", "--epochs", "1", "--train-limit", "256", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["model"] == "lenet5" and report["details"]["teacher"] == "lenet"
    assert report["params"] < report["params_before"] / 5 and report["bytes_after"] < report["bytes_before"] / 5
    assert report["details"]["temperature"] == 3 and report["details"]["alpha"] == 0.7
    student, meta = load_checkpoint(out)
    assert meta["name"] == "lenet5" and vz.count_params(student) == report["params"]
    assert json.loads((out / "compress.json").read_text())["retraining"][0]["train_loss"] > 0
    assert main(["eval", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == report["top1_after"]


@pytest.mark.parametrize("args, message", [
    (["--method", "prune", "--sparsity", "1.5"], "sparsity"),
    (["--method", "prune", "--layer-sparsity", "fc9=0.5"], "fc9"),
    (["--method", "prune", "--layer-sparsity", "fc1.0"], "LAYER=FRACTION"),
    (["--method", "distill"], "--student"),
    (["--method", "distill", "--student", "lenet9"], "did you mean"),
    (["--method", "channels", "--channel-ratio", "0"], "--channel-ratio"),
    (["--method", "squash"], "invalid choice"),
    (["--method", "prune", "--mode", "xnor"], "--mode is an option of --method binarize; --method prune does not"),
    (["--method", "binarize", "--sparsity", "0.5"], "--sparsity is an option of --method prune, deep; --method binarize"),
    (["--method", "ternary", "--no-huffman"], "--no-huffman is an option of --method prune, deep, kmeans;"),
    (["--method", "kmeans", "--conv-index-bits", "4"], "--conv-index-bits is an option of --method prune, deep;"),
    (["--method", "channels", "--student", "lenet"], "--student is an option of --method distill;"),
    (["--method", "kmeans", "--epochs", "3"], "--epochs: --method kmeans does not retrain; its centroid fine-tuning"),
])
def test_bad_input_exits_2_with_one_line(run_dir, tmp_path, args, message):
    assert_one_line_exit_2(cli_here("compress", run_dir, *args, "--out", tmp_path / "o"), message)


def test_missing_checkpoint_exits_2(tmp_path):
    refused = cli_here("compress", tmp_path / "nothing", "--method", "prune", "--out", tmp_path / "o")
    assert_one_line_exit_2(refused, "does not exist", "give a run directory")


def test_huffman_codes_are_canonical_in_length_then_symbol_order():
    # the canonical code of RFC 1951 Sec. 3.2.2 (its example): lengths (3, 3, 3, 3, 3, 2, 4, 4) give
    # F = 00, A..E = 010..110, G, H = 1110, 1111 — ties in length go by symbol, ascending
    codes = huffman.canonical_codes(np.array([3, 3, 3, 3, 3, 2, 4, 4]))
    assert codes.tolist() == [0b010, 0b011, 0b100, 0b101, 0b110, 0b00, 0b1110, 0b1111]


def test_filter_pruning_removes_the_rounded_fraction_of_smallest_l1_filters():
    # Li et al. Sec. 3.1: of 10 filters with ℓ1 norms 1..10, ratio 0.33 removes round(3.3) = 3, the smallest
    weight = torch.arange(1.0, 11.0)[:, None, None, None].repeat(1, 2, 1, 1) / 2
    weight[::2] *= -1   # the ℓ1 norm, not the sum
    assert channels.smallest_filters(weight, 0.33).tolist() == [3, 4, 5, 6, 7, 8, 9]
