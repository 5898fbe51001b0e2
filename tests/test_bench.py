"""`visionzoo bench`: it runs and reports consistent fields (no timing assertions)."""
import json

import pytest

from visionzoo.bench import BenchConfig, benchmark, spread
from visionzoo.cli.main import main

from conftest import assert_one_line_exit_2, cli_here

TINY = dict(warmup=1, repeats=2, threads=1)


def test_bench_alone_reports_positive_rates_and_the_flop_arithmetic():
    result = benchmark(BenchConfig("lenet5", input_size=(1, 28, 28), batch_size=4, dtype="bf16", **TINY))
    for kind, factor in (("train", 3), ("infer", 1)):
        assert result[f"{kind}_img_s"] > 0
        latency = result[f"{kind}_ms"]
        assert latency["min"] <= latency["q1"] <= latency["median"] <= latency["q3"] <= latency["max"]
        assert result[f"{kind}_img_s"] == pytest.approx(4 / (latency["median"] / 1e3))
        assert result[f"{kind}_gflop_s"] == pytest.approx(factor * 2 * result["macs"] * result[f"{kind}_img_s"] / 1e9)
    assert "twin" not in result and "peak_gflop_s" not in result


def test_compare_reports_both_networks_and_the_ratio_ours_over_twin(capsys):
    code = main(["bench", "squeezenet1_1", "--input-size", "3", "64", "64", "--batch-size", "2", "--compare",
                 "torchvision", "--channels-last", "--warmup", "1", "--repeats", "2", "--threads", "1", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("model", "input_size", "batch_size", "dtype", "train_img_s", "infer_img_s",
                "twin", "twin_train_img_s", "twin_infer_img_s"):
        assert key in result
    assert result["threads"] == 1 and result["twin"] == "squeezenet1_1" and result["input_size"] == [3, 64, 64] and result["dtype"] == "fp32"
    assert result["same_work"] and result["macs"] == result["twin_macs"]
    for kind in ("train", "infer"):
        assert result[f"twin_{kind}_img_s"] > 0
        assert result[f"{kind}_ratio"] == pytest.approx(result[f"{kind}_img_s"] / result[f"twin_{kind}_img_s"])
        cpu_ms = (result[f"twin_{kind}_cpu_ms"]["median"], result[f"{kind}_cpu_ms"]["median"])
        assert result[f"{kind}_cpu_ratio"] == pytest.approx(cpu_ms[0] / cpu_ms[1])


def test_peak_fraction_is_the_model_rate_over_the_conv_rate():
    result = benchmark(BenchConfig("lenet5", input_size=(1, 28, 28), batch_size=4, peak=True,
                                   peak_seconds=0.02, **TINY))
    assert result["peak_gflop_s"] > 0 and result["peak_conv"]["batch"] >= 1
    assert result["train_peak_fraction"] == pytest.approx(result["train_gflop_s"] / result["peak_gflop_s"])


def test_spread_of_known_latencies():
    stats = spread([0.004, 0.001, 0.003, 0.002, 0.005])
    assert stats["median"] == pytest.approx(3.0) and stats["min"] == pytest.approx(1.0)
    assert stats["max"] == pytest.approx(5.0) and stats["iqr"] > 0


@pytest.mark.parametrize("argv, words", [
    (["bench", "resnet_18"], "unknown model"),
    (["bench", "lenet5", "--compare", "torchvision"], "no torchvision twin"),
    (["bench", "resnet18", "--input-size", "1", "64", "64", "--compare", "torchvision"], "3 channels"),
    (["bench", "lenet5", "--batch-size", "0"], "--batch-size"),
])
def test_bad_usage_is_one_line_and_exit_2(argv, words):
    assert_one_line_exit_2(cli_here(*argv), words)
