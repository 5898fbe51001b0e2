import contextlib
import io
import os
import signal
import subprocess
import sys

# Under pytest-xdist (make test: one worker per core) each worker computes on one thread; more would only
# make the workers' threads fight for the same cores. Set before torch loads, for OpenMP and subprocesses.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest
import torch
from torch import nn

TEST_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1))
torch.set_num_threads(TEST_THREADS)


@pytest.fixture(autouse=True)
def restore_global_state():
    """A test that changes torch's thread count, deterministic mode, signal handlers, the environment or the working directory
    leaves them as it found them for the next test on the same worker."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    cwd, environ = os.getcwd(), dict(os.environ)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in handlers.items():
        if handler is not None and signal.getsignal(signum) is not handler:
            signal.signal(signum, handler)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    os.chdir(cwd)
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)


def logits_of(output):
    """Training-mode forward of networks with auxiliary heads returns (logits, [aux, ...])."""
    return output[0] if isinstance(output, tuple) else output


def smallest_of_each_family(names) -> list[str]:
    """Each family's member with the fewest parameters by its paper's figure (read without building it): code a
    family shares — its seeded initialisation, its export — is tested on this member."""
    from visionzoo.registry import get_entry, parse_figure

    def paper_params(name: str) -> float:
        figure = parse_figure(get_entry(name).paper_params)
        return figure[0] if figure else float("inf")
    families = {get_entry(name).family for name in names}
    return sorted(min((n for n in names if get_entry(n).family == family), key=paper_params) for family in families)


@pytest.fixture
def fmnist_available():
    from visionzoo.data.datasets import find_fashion_mnist
    if find_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST not installed (make test installs it)")


class Constant(nn.Module):
    """A module whose output is its input's shape filled with `value` (a mask fixed at 0, ½, …)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full_like(x, self.value)


def assert_attention_residual_learning(module, x):
    """A residual attention module (Wang et al., Eq. 3) computes post((1 + M)·T) with its soft mask M in
    (0, 1), and a mask of zero keeps the trunk's features T (not F·M); the mask is restored afterwards."""
    with torch.no_grad():
        pre = module.pre(x)
        mask, trunk = module.mask(pre), module.trunk(pre)
        assert mask.shape == trunk.shape and ((mask > 0) & (mask < 1)).all()
        torch.testing.assert_close(module(x), module.post((1 + mask) * trunk))
        learned, module.mask = module.mask, Constant(0.0)
        try:
            torch.testing.assert_close(module(x), module.post(trunk))
        finally:
            module.mask = learned
    return trunk


def randomise_batchnorm(model, batch):
    """Random affine parameters in every BN layer, and as running statistics those of `batch`.

    At initialisation eval-mode BN is the identity, so a test would not see its tensors. Statistics
    measured on data rather than drawn at random keep the signal alive whatever the network's
    initialisation (drawn ones erase the input of networks with small initial weights, or blow it up).
    Only the BN layers run in training mode for the measurement: no dropout, no auxiliary heads.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    model.eval()
    with torch.no_grad():
        for m in norms:
            if m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
            m.reset_running_stats()
            m.momentum = None   # a cumulative average: after one batch, exactly its statistics
            m.train()
        if norms:
            model(batch)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Model cards measured by the tests go to a cache of their own, not the user's ~/.cache/visionzoo."""
    os.environ.setdefault("VISIONZOO_CACHE", str(tmp_path_factory.mktemp("cache")))


def cli_process(*args, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """`python -m visionzoo ARGS` in a process of its own (`env`: variables added to this one's), for what only a
    process shows: its whole stderr from start to exit, signals, several processes."""
    return subprocess.run([sys.executable, "-m", "visionzoo", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=None if env is None else {**os.environ, **env}, **kwargs)


def cli_here(*args) -> subprocess.CompletedProcess:
    """The command line's `main` in this process (the imports paid once), its output captured, as
    `cli_process` reports it."""
    from visionzoo.cli.main import main
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return subprocess.CompletedProcess(argv, status, out.getvalue(), err.getvalue())


def assert_one_line_exit_2(result: subprocess.CompletedProcess, *fragments) -> None:
    """Bad input's answer: exit status 2 and one line on stderr holding every fragment."""
    assert result.returncode == 2, (result.args, result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert all(fragment in lines[0] for fragment in fragments), lines[0]


def interrupt_after(config, steps: int, out) -> None:
    """Train `config` (a TrainConfig's keywords) into `out` and stop it as Ctrl-C would once `steps`
    global steps have run: the run saves a checkpoint and raises Interrupted."""
    from visionzoo.engine.trainer import Interrupted, TrainConfig, Trainer
    stopped = Trainer(TrainConfig(**config, quiet=True, out=str(out)))
    original = stopped.task.training_step

    def interrupt(*args):
        if stopped.global_step == steps:
            stopped.stop_requested = True
        return original(*args)

    stopped.task.training_step = interrupt
    with pytest.raises(Interrupted):
        stopped.run()


def assert_same_weights(run_a, run_b) -> None:
    """The two run directories' model.safetensors hold the same tensors, bit for bit."""
    from safetensors.torch import load_file
    a, b = load_file(str(run_a / "model.safetensors")), load_file(str(run_b / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train_flags(settings: dict) -> list[str]:
    """`visionzoo train` flags for a TrainConfig settings dict (model_args as repeated --model-arg, lists
    comma-separated, a True switch as its bare flag)."""
    flags = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if key == "model_args":
            flags += [item for k, v in value.items() for item in ("--model-arg", f"{k}={v}")]
        elif isinstance(value, (list, tuple)):
            flags += [flag, ",".join(map(str, value))]
        else:
            flags += [flag] if value is True else [flag, str(value)]
    return flags


def run_recording_losses(trainer) -> torch.Tensor:
    """Run `trainer` and return the loss of every optimiser step it took, in order (detached copies)."""
    losses, optimise = [], trainer._optimise
    trainer._optimise = lambda phase, loss: (losses.append(loss.detach().clone()), optimise(phase, loss))[1]
    trainer.run()
    return torch.stack(losses)
