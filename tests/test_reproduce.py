"""`visionzoo reproduce`: every registered experiment's smoke run writes its report, data and figures."""
import json

import pytest
import torch

from visionzoo.cli.main import main
from visionzoo.experiments import all_experiments
from visionzoo.experiments.base import HELD, INCONCLUSIVE, NOT_HELD, NOTE_TITLES

from conftest import assert_one_line_exit_2, cli_here

NAMES = [e.name for e in all_experiments()]


@pytest.fixture(autouse=True)
def one_thread():
    """Smoke runs are many tiny steps: on a shared CPU a second thread only adds contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", NAMES)
def test_smoke_run_writes_report(name, tmp_path, capsys):
    assert main(["reproduce", name, "--budget", "smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["experiment"] == name and results["budget"] == "smoke"
    assert results["verdict"] in (HELD, NOT_HELD, INCONCLUSIVE)
    assert results["figures"] and all((tmp_path / f).stat().st_size > 0 for f in results["figures"])
    assert all(f.endswith(".png") for f in results["figures"])
    report = (tmp_path / "report.md").read_text()
    assert results["claim"] in report and f"**Verdict**: {results['verdict']}" in report
    page = (tmp_path / "report.html").read_text()
    assert all(f"src='{f}'" in page for f in results["figures"])
    assert results["verdict"] in capsys.readouterr().out


def test_list_names_every_experiment_and_its_section(capsys):
    assert main(["reproduce", "--list"]) == 0
    listing = capsys.readouterr().out
    for exp in all_experiments():
        assert exp.name in listing and exp.notes in listing and exp.heading in listing
        assert NOTE_TITLES[exp.notes] in listing   # the file also named by what it covers


def test_unknown_name_exits_2_with_close_matches():
    assert_one_line_exit_2(cli_here("reproduce", "conv-arithmetc", "--budget", "smoke"), "conv-arithmetic")


def test_no_name_is_usage_error():
    assert_one_line_exit_2(cli_here("reproduce"), "--list")


def test_expected_calibration_error_by_its_definition():
    from visionzoo.experiments.calibration import reliability
    confidence = torch.full((1000,), 0.75)
    calibrated = (torch.arange(1000) % 4 != 0).float()  # 75 % right at confidence 0.75
    assert reliability(confidence, calibrated)[0] == pytest.approx(0.0, abs=1e-6)
    assert reliability(confidence, torch.zeros(1000))[0] == pytest.approx(0.75)


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    from visionzoo.experiments.family_table import spearman
    g = torch.Generator().manual_seed(0)
    xs, ys = torch.randint(0, 5, (30,), generator=g).tolist(), torch.rand(30, generator=g).tolist()
    assert spearman(xs, ys) == pytest.approx(spearmanr(xs, ys).statistic)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_distortion_moves_the_image_by_the_asked_shift():
    from visionzoo.experiments.transformations import distort
    image = torch.zeros(1, 1, 15, 15)
    image[0, 0, 7, 7] = 1.0
    assert torch.allclose(distort(image, torch.Generator().manual_seed(0)), image, atol=1e-6)
    moved = distort(image, torch.Generator().manual_seed(0), shift=3.0)
    row, col = divmod(int(moved.flatten().argmax()), 15)
    assert max(abs(row - 7), abs(col - 7)) <= 3 and moved.sum() == pytest.approx(1.0, abs=1e-4)


def test_strided_convolution_formula_is_torchs():
    from visionzoo.experiments.arithmetic import output_size, strided_convolution
    g = torch.Generator().manual_seed(1)
    p, w = torch.randn(9, 9, generator=g, dtype=torch.float64), torch.randn(3, 3, generator=g, dtype=torch.float64)
    expected = torch.nn.functional.conv2d(p[None, None], w[None, None], stride=2)[0, 0]
    assert expected.shape[-1] == output_size(9, 3, 2, 0)
    torch.testing.assert_close(strided_convolution(p, w, 2), expected)


def test_resume_reuses_a_finished_run_and_retrains_a_changed_one(tmp_path):
    from visionzoo.experiments.base import Context
    from visionzoo.experiments.common import train_registered
    settings = dict(train_limit=64, epochs=1, batch_size=32, test_limit=200)
    first, trainer = train_registered(Context("quick", tmp_path, 0), "lenet", "run", **settings)
    checkpoint = tmp_path / "runs" / "run" / "checkpoint.pt"
    written = checkpoint.stat().st_mtime_ns

    resuming = Context("quick", tmp_path, 0, resume=True)
    again, resumed = train_registered(resuming, "lenet", "run", **settings)
    assert checkpoint.stat().st_mtime_ns == written  # not trained again
    assert again["test_top1"] == first["test_top1"] and resumed.history == trainer.history

    changed, retrained = train_registered(resuming, "lenet", "run", **{**settings, "epochs": 2})
    assert checkpoint.stat().st_mtime_ns != written and len(retrained.history) == 2
