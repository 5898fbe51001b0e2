"""benchmarks/detection_speed.py: the torchvision twin it times ours against does the same work (the same
proposals and detections from the same weights), and its smoke mode prints one row in BENCHMARKS.md's form."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "detection_speed.py"
_spec = importlib.util.spec_from_file_location("detection_speed", _SCRIPT)
detection_speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(detection_speed)


def test_the_twin_makes_our_proposals_and_detections_from_the_same_weights():
    ours, theirs = detection_speed.detector_pair("faster_rcnn_small", 128)
    images, targets = detection_speed.scene_batch(2, 1, 128, torch.Generator().manual_seed(0))
    assert all(0 <= t["boxes"].min() and t["boxes"].max() <= 128 and len(t["boxes"]) >= 1 for t in targets)
    with torch.no_grad():
        found = ours.eval()(images)
        expected = theirs.eval()(list(images))
    assert sum(len(f["boxes"]) for f in found) > 0
    for a, b in zip(found, expected):
        torch.testing.assert_close(a["boxes"], b["boxes"], rtol=0, atol=1e-4)
        assert torch.equal(a["labels"], b["labels"])


@pytest.mark.slow
def test_the_smoke_mode_prints_a_row_with_positive_rates(capsys):
    assert detection_speed.main(["--quick"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Command: `.venv/bin/python benchmarks/detection_speed.py --quick`")
    row = [cell.strip() for cell in lines[-1].strip("|").split("|")]
    assert row[:3] == ["faster_rcnn_small", "128×128", "2"]
    ours, theirs = (int(n.replace(",", "")) for n in row[3].split("/"))
    assert ours == theirs
    rates = [float(cell) for cell in row[4:]]
    assert all(rate > 0 for rate in rates)
    assert rates[2] == pytest.approx(rates[0] / rates[1], rel=0.02)   # train ratio: ours / torchvision (of rounded cells)
    assert rates[5] == pytest.approx(rates[4] / rates[3], rel=0.02)   # inference ratio: torchvision / ours
