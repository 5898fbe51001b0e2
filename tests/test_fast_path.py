"""The GPU-fast training path, as far as the CPU can check it (issue 27): `--compile` gives the eager
step's losses and the eager run's files; the training step never makes the host wait for the device
(a counter of the Python calls that would, and on CUDA torch's own sync debug mode); the per-epoch
evaluation runs under the step's autocast on CUDA only."""
from __future__ import annotations

import contextlib
import functools
import json
import traceback

import pytest
import torch

from visionzoo.core.errors import UsageError
from visionzoo.core.io import read_torch
from visionzoo.core.runtime import autocast_dtype, compile_problem, evaluation_autocast, evaluation_dtype
from visionzoo.data.augment import ERASE_AREA, ERASE_ASPECT, random_erasing
from visionzoo.data.loader import Normalizer, channel_constants
from visionzoo.engine.trainer import TrainConfig, Trainer

from conftest import run_recording_losses

# A recipe's training step in miniature: lenet on the synthetic data set, 4 steps of 16 images.
SMALL = dict(model="lenet", data="fake", train_limit=64, batch_size=16, epochs=1, val_size=16, test_limit=16,
             seed=1, quiet=True)
RECIPE_LIKE = dict(crop=2, flip=True, label_smoothing=0.1, clip_grad=1.0, optimizer="nesterov")


@pytest.fixture
def fresh_dynamo():
    """Compiled frames and their guards do not outlive the test (later tests compile afresh)."""
    yield
    torch._dynamo.reset()


# ---- the sync counter ----------------------------------------------------------------------------
# Calls that make the host wait for the device on CUDA: reading a value (item, tolist, float(t), int(t),
# bool(t) as in `if t:`, numpy), copying to the host (cpu), results whose size depends on the data (nonzero,
# indexing with a boolean mask), and tensors made from Python data straight on a device (torch.tensor(…,
# device=…): a blocking host-to-device copy).
READS = ("item", "tolist", "cpu", "numpy", "nonzero", "__bool__", "__float__", "__int__", "__index__")


class SyncCounter:
    """Records, with the caller's file and line, every call of READS and the like made while `active`."""

    def __init__(self, monkeypatch):
        self.active = False
        self.calls: list[str] = []
        for name in READS:
            monkeypatch.setattr(torch.Tensor, name, self._counted(getattr(torch.Tensor, name), name))
        monkeypatch.setattr(torch, "nonzero", self._counted(torch.nonzero, "torch.nonzero"))
        for name in ("__getitem__", "__setitem__"):
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counted(original, name, when=self._masked))
        for name in ("tensor", "as_tensor"):
            original = getattr(torch, name)
            monkeypatch.setattr(torch, name, self._counted(original, f"torch.{name}(device=…)",
                                                           when=lambda args, kwargs: "device" in kwargs))

    @staticmethod
    def _masked(args, kwargs) -> bool:
        index = args[1] if len(args) > 1 else None
        parts = index if isinstance(index, tuple) else (index,)
        return any(isinstance(part, torch.Tensor) and part.dtype == torch.bool for part in parts)

    def _counted(self, original, name: str, when=lambda args, kwargs: True):
        def counted(*args, **kwargs):
            if self.active and when(args, kwargs):
                caller = traceback.extract_stack(limit=2)[0]
                self.calls.append(f"{name} at {caller.filename}:{caller.lineno}")
            return original(*args, **kwargs)
        return counted

    def wrap(self, owner, name: str, when=lambda: True) -> None:
        """Count inside `owner.name` (an instance's method or a callable attribute) when `when()`."""
        original = getattr(owner, name)

        def watched(*args, **kwargs):
            with self.counting() if when() else contextlib.nullcontext():
                return original(*args, **kwargs)
        setattr(owner, name, watched)

    @contextlib.contextmanager
    def counting(self):
        outer, self.active = self.active, True
        try:
            yield
        finally:
            self.active = outer


def training_step_parts(trainer: Trainer) -> list[tuple[object, str]]:
    """What a training step runs: the task's prepare and training_step, the engine's _optimise (backward,
    clipping, optimiser), the schedules' step and the EMA's update."""
    return [(trainer.task, "prepare"), (trainer.task, "training_step"), (trainer, "_optimise"),
            *((scheduler, "step") for scheduler in trainer.schedulers.values()),
            *([(trainer.ema, "update")] if trainer.ema else [])]


def watch_training_step(trainer: Trainer, counter: SyncCounter) -> None:
    """Count inside the parts of a training step (`training_step_parts`) from the second step on: the
    first makes what is then kept on the device (the normaliser's constants)."""
    def steady() -> bool:
        return trainer.global_step > 0
    for owner, name in training_step_parts(trainer):
        counter.wrap(owner, name, steady)


def test_the_sync_counter_counts_what_it_is_meant_to(monkeypatch):
    counter = SyncCounter(monkeypatch)
    t = torch.arange(4.0)
    with counter.counting():
        t.sum().item(), float(t[0]), bool(t.any()), t.tolist(), t[t > 1], torch.tensor([1.0], device="cpu")
    t.sum().item()   # not counted: outside
    names = [call.split(" at ")[0] for call in counter.calls]
    assert names == ["item", "__float__", "__bool__", "tolist", "__getitem__", "torch.tensor(device=…)"]
    assert all(__file__ in call for call in counter.calls)


@pytest.mark.parametrize("settings", [
    dict(ema=None, amp="off"),
    dict(ema=0.9, amp="auto", cutout=8),                       # bf16 autocast on CPUs that have it
    dict(ema=None, amp="off", label_smoothing_form="notes", crop=0, random_erasing=0.5),
    dict(model="resnet9_slim", whiten=True, crop=0, random_erasing=0.5, amp="auto"),   # fmnist95's kind of step
], ids=["plain", "ema-amp-cutout", "notes-smoothing-erasing", "resnet9-whiten-erasing"])
def test_no_host_synchronisation_inside_the_training_step(monkeypatch, settings):
    import visionzoo.data.augment as augment
    trainer = Trainer(TrainConfig(**{**SMALL, **RECIPE_LIKE, **settings}))
    # On the CPU, random erasing keeps its round-by-round loop (the draws of the recorded runs); any other
    # device draws all rounds at once, which is what is counted here.
    monkeypatch.setattr(augment, "random_erasing", functools.partial(random_erasing, all_rounds=True))
    counter = SyncCounter(monkeypatch)
    watch_training_step(trainer, counter)
    trainer.train_epoch()
    assert trainer.global_step == 4
    assert counter.calls == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("compiled", ["off", "on"])
def test_no_synchronising_cuda_call_inside_the_training_step(compiled, fresh_dynamo):
    trainer = Trainer(TrainConfig(**SMALL, **RECIPE_LIKE, ema=0.9, random_erasing=0.5, device="cuda",
                                  compile=compiled))

    def strict(owner, name):
        original = getattr(owner, name)

        def run(*args, **kwargs):
            if trainer.global_step == 0:   # the first step initialises CUDA libraries (and compiles)
                return original(*args, **kwargs)
            torch.cuda.set_sync_debug_mode("error")
            try:
                return original(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        setattr(owner, name, run)
    for owner, name in training_step_parts(trainer):
        strict(owner, name)
    trainer.train_epoch()
    assert trainer.global_step == 4


# ---- what the audit changed ------------------------------------------------------------------------
def _boxes(original: torch.Tensor, erased: torch.Tensor):
    """(image index, rows, columns) of the changed region of each erased image."""
    changed = (erased != original.float()).any(1)
    for i in changed.flatten(1).any(1).nonzero().flatten().tolist():
        rows, cols = changed[i].any(1).nonzero().flatten(), changed[i].any(0).nonzero().flatten()
        yield i, rows, cols


def test_random_erasing_with_all_rounds_at_once_obeys_algorithm_1(monkeypatch):
    x = torch.full((2000, 1, 28, 28), 300.0)   # outside [0, 255]: every erased pixel differs
    h, w = x.shape[-2:]
    counter = SyncCounter(monkeypatch)
    with counter.counting():
        erased = random_erasing(x, 0.5, torch.Generator().manual_seed(0), all_rounds=True)
    assert counter.calls == []
    boxes = list(_boxes(x, erased))
    assert abs(len(boxes) / len(x) - 0.5) < 0.04                       # erased with probability p
    for i, rows, cols in boxes:
        box_h, box_w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        assert len(rows) == box_h and len(cols) == box_w                 # one rectangle
        assert (erased[i, :, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] <= 255).all()
        assert ERASE_AREA[0] <= box_h * box_w / (h * w) <= ERASE_AREA[1]
        assert ERASE_ASPECT <= box_h / box_w <= 1 / ERASE_ASPECT


def test_random_erasing_draws_one_round_at_a_time_on_the_cpu_by_default():
    x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    default = random_erasing(x, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(default, random_erasing(x, 0.5, torch.Generator().manual_seed(3), all_rounds=False))
    assert not torch.equal(default, random_erasing(x, 0.5, torch.Generator().manual_seed(3), all_rounds=True))


def test_normaliser_constants_are_made_once_and_usable_in_backward():
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    normalizer = Normalizer([0.2, 0.4, 0.6], [0.1, 0.2, 0.3])
    expected = (images.float() / 255 - torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)) \
        / torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    assert torch.equal(normalizer(images), expected)
    with torch.inference_mode():
        made = channel_constants((0.5, 0.25), torch.device("cpu"))
    assert not made.is_inference() and channel_constants((0.5, 0.25), torch.device("cpu")) is made
    x = torch.ones(1, 2, 1, 1, requires_grad=True)
    (x / made).sum().backward()   # an inference tensor could not be saved for this backward pass
    assert torch.equal(x.grad.flatten(), torch.tensor([2.0, 4.0]))


# ---- --compile --------------------------------------------------------------------------------------
def test_compile_auto_is_off_on_the_cpu_and_recorded(tmp_path):
    trainer = Trainer(TrainConfig(**SMALL, out=str(tmp_path / "run")))
    assert trainer.cfg.compile == "auto" and not trainer.compiled and trainer.task.net is trainer.model
    trainer._write_start()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["compile"] is False


def test_compile_without_a_compiler_is_refused_before_the_run(monkeypatch):
    import torch._inductor.config as inductor
    with inductor.patch({"cpp.cxx": ("visionzoo-no-such-c++",)}):
        assert "compiler" in compile_problem(torch.device("cpu"))
        with pytest.raises(UsageError, match="--compile on: .*use --compile off"):
            Trainer(TrainConfig(**SMALL, compile="on"))


def _losses_and_run(settings: dict, out) -> torch.Tensor:
    return run_recording_losses(Trainer(TrainConfig(**SMALL, **RECIPE_LIKE, amp="off", out=str(out), **settings)))


@pytest.mark.slow   # Inductor compiles lenet's forward and backward on the CPU: 30-40 s
def test_compiled_step_gives_the_eager_losses_and_the_eager_files(tmp_path, fresh_dynamo):
    from safetensors.torch import load_file
    eager = _losses_and_run(dict(compile="off"), tmp_path / "eager")
    compiled = _losses_and_run(dict(compile="on"), tmp_path / "compiled")
    assert len(eager) == 4 and len(set(eager.tolist())) > 1   # the weights moved between steps
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=0)
    for name in ("model.safetensors", "best.safetensors"):
        assert load_file(str(tmp_path / "compiled" / name)).keys() == load_file(str(tmp_path / "eager" / name)).keys()
    saved = read_torch(tmp_path / "compiled" / "checkpoint.pt")["model"]
    assert saved.keys() == read_torch(tmp_path / "eager" / "checkpoint.pt")["model"].keys()
    summary = json.loads((tmp_path / "compiled" / "summary.json").read_text())
    assert summary["compile"] is True
    resumed = Trainer(TrainConfig(quiet=True), resume=str(tmp_path / "compiled"))
    resumed.load_checkpoint(tmp_path / "compiled" / "checkpoint.pt")   # the plain network's keys
    assert resumed.compiled and resumed.global_step == 4


# ---- evaluation in bf16 on CUDA ----------------------------------------------------------------------
@pytest.mark.parametrize("bf16", [True, False])
def test_evaluation_on_cuda_with_amp_takes_the_training_steps_autocast(monkeypatch, bf16):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    cuda = torch.device("cuda")
    assert evaluation_dtype(cuda, True) == autocast_dtype(cuda) == (torch.bfloat16 if bf16 else torch.float16)
    assert evaluation_dtype(cuda, False) is None
    assert evaluation_dtype("cpu", True) is None and evaluation_dtype(torch.device("cpu"), False) is None


def test_evaluation_on_the_cpu_stays_fp32_with_amp():
    from visionzoo.tasks.classification import evaluate
    trainer = Trainer(TrainConfig(**SMALL, amp="on"))
    with evaluation_autocast("cpu", True):
        assert not torch.is_autocast_enabled("cpu")
    plain = evaluate(trainer.model, trainer.data.val, trainer.normalizer, device="cpu", amp=False)
    assert evaluate(trainer.model, trainer.data.val, trainer.normalizer, device="cpu", amp=True) == plain
    assert trainer.task.evaluate(trainer.model, "val") == plain
