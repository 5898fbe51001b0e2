"""The engine with a task other than classification: two optimisers stepped in alternating phases
(a GAN's k discriminator steps per generator step), both in the checkpoint, and an interrupted
run resumed to the same weights, bit for bit, as one that was never stopped."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from visionzoo.engine import trainer as engine
from visionzoo.engine.trainer import Interrupted, TrainConfig, Trainer
from visionzoo.tasks.base import StepOutput, Task

from conftest import interrupt_after

K = 2  # discriminator steps per generator step


class TwoPlayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.generator = nn.Linear(4, 4)
        self.discriminator = nn.Linear(4, 1)

    def forward(self, x):
        return self.discriminator(self.generator(x))


class AlternatingTask(Task):
    """Fits the generator's outputs to data seen by a linear critic; only the loop's plumbing
    matters here, not the game."""

    name = "toy"
    record_keys = ("loss",)

    def load_data(self):
        g = torch.Generator().manual_seed(self.cfg.seed)
        self.data = SimpleNamespace(train=(torch.randn(64, 4, generator=g) + 2).to(self.device),
                                    val=(torch.randn(16, 4, generator=g) + 2).to(self.device))
        self.input_size = (4,)
        self.steps_seen: list[list[str]] = []

    @property
    def train_size(self):
        return len(self.data.train)

    def describe_data(self):
        return f"{len(self.data.train)} train"

    def build_model(self, **kwargs):
        self.model_kwargs = {}
        return TwoPlayers()

    def optimized_modules(self):
        return {"discriminator": self.model.discriminator, "generator": self.model.generator}

    def phases(self, step):
        return ["discriminator"] + (["generator"] if step % K == K - 1 else [])

    def train_batches(self, epoch, start_step):
        order = torch.randperm(len(self.data.train), generator=torch.Generator().manual_seed(epoch)).to(self.device)
        for step in range(start_step, len(order) // self.cfg.batch_size):
            yield self.data.train[order[step * self.cfg.batch_size:(step + 1) * self.cfg.batch_size]]

    def training_step(self, real, phase, generator):
        noise = torch.randn(real.shape, generator=generator, device=real.device)
        fake = self.model.generator(noise)
        if phase == "discriminator":
            loss = (self.model.discriminator(fake.detach()) - self.model.discriminator(real)).mean()
        else:
            loss = -self.model.discriminator(fake).mean()
        self.steps_seen.append(phase)
        return StepOutput({phase: loss}, {"loss": loss.detach().double() * len(real)}, len(real))

    def evaluate(self, model, split):
        with torch.no_grad():
            return {"loss": model.discriminator(getattr(self.data, split)).mean().item()}

    def test(self, model, out, title):
        return {"test_loss": self.evaluate(model, "val")["loss"]}


@pytest.fixture
def toy_task(monkeypatch):
    monkeypatch.setitem(engine.TASK_CLASSES, "toy", AlternatingTask)
    real_entry = engine.registry.get_entry
    monkeypatch.setattr(engine.registry, "get_entry",
                        lambda name: SimpleNamespace(task="toy") if name == "toy" else real_entry(name))


TOY = dict(model="toy", data="toy-points", epochs=2, batch_size=8, lr=0.05, optimizer="sgd", schedule="cosine",
           amp="off", channels_last="off", label_smoothing=0.0)


def config(out, **changes):
    return TrainConfig(**TOY, out=str(out), quiet=True, **changes)


def test_phases_step_their_own_optimiser_k_to_one(toy_task, tmp_path):
    trainer = Trainer(config(tmp_path / "run"))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_epoch()
    phases = trainer.task.steps_seen
    assert phases.count("discriminator") == 8 and phases.count("generator") == 8 // K
    assert set(trainer.optimizers) == {"discriminator", "generator"}
    # Each optimiser holds only its player's parameters, and both players' weights moved.
    for name, module in trainer.trained_modules.items():
        held = {id(p) for group in trainer.optimizers[name].param_groups for p in group["params"]}
        assert held == {id(p) for p in module.parameters()}
    after = trainer.model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))


def test_interrupted_two_optimiser_run_resumes_bit_identical(toy_task, tmp_path):
    interrupt_after(TOY, 11, tmp_path / "stopped")
    saved = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)
    assert set(saved["optimizers"]) == set(saved["schedulers"]) == set(saved["scalers"]) == {"discriminator", "generator"}

    resumed = Trainer(TrainConfig(quiet=True), resume=str(tmp_path / "stopped"))
    resumed.run()
    whole = Trainer(config(tmp_path / "again"))
    whole.run()
    assert 0 < len(resumed.task.steps_seen) < len(whole.task.steps_seen)  # it continued, not restarted
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    for name in whole.optimizers:
        assert whole.optimizers[name].state_dict()["state"].keys() == resumed.optimizers[name].state_dict()["state"].keys()


def test_a_signal_after_the_last_step_still_stops_the_caller_once_the_handlers_are_back(toy_task, tmp_path):
    import signal
    trainer = Trainer(config(tmp_path / "run"))

    class SignalAtTheEnd:   # Ctrl-C while the finished run is being evaluated and written
        @staticmethod
        def on_finish(trainer, summary):
            trainer._on_sigint(signal.SIGINT, None)

    trainer.hooks.append(SignalAtTheEnd())
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted):
        trainer.run()
    assert signal.getsignal(signal.SIGINT) is before
    assert (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "summary.json").exists()


def test_the_default_prepare_shards_a_tensor_or_a_tuple_of_tensors_by_rows():
    from visionzoo.tasks.base import Task

    def task(rank, world):
        return Task(None, device=torch.device("cpu"), rank=rank, world=world, channels_last=False, amp=False,
                    log=print)

    x = torch.arange(6)
    assert torch.equal(task(1, 2).prepare(x, None), torch.tensor([1, 3, 5]))
    inputs, targets = task(0, 2).prepare((x, x * 10), None)
    assert torch.equal(inputs, torch.tensor([0, 2, 4])) and torch.equal(targets, torch.tensor([0, 20, 40]))
    assert task(0, 1).prepare(x, None) is x
