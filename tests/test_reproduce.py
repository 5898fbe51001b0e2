"""`visionzoo reproduce`: every registered experiment's smoke run writes its report, data and figures."""
import json

import pytest
import torch

from visionzoo.cli.main import main
from visionzoo.experiments import all_experiments
from visionzoo.experiments.base import HELD, INCONCLUSIVE, NOT_HELD

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


def test_unknown_name_exits_2_with_close_matches(capsys):
    assert main(["reproduce", "conv-arithmetc", "--budget", "smoke"]) == 2
    assert "conv-arithmetic" in capsys.readouterr().err


def test_no_name_is_usage_error(capsys):
    assert main(["reproduce"]) == 2
    assert "--list" in capsys.readouterr().err
