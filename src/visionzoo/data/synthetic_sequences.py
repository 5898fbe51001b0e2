"""Synthetic sequence-regression data (`--data` of the sequence-regression task).

- `adding:T`: the adding problem of Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural
  Computation 9(8), 1997, Sec. 5.4 (Experiment 4), in the form of Le, Jaitly & Hinton, "A Simple Way
  to Initialize Recurrent Networks of Rectified Linear Units", 2015, Sec. 4.1: a sequence of T steps,
  each a pair (value u_t ~ U(0, 1), marker m_t ∈ {0, 1}), exactly two markers set — one in the first
  half (t < T // 2), one in the second — and the target Σ_t m_t·u_t, the sum of the two marked values.
  The network must carry the first marked value across up to T − 1 steps. Predicting the mean 1
  always gives MSE Var(u₁ + u₂) = 2/12 ≈ 0.167 (`ADDING_BASELINE_MSE`).

A split holds float32 inputs (N, T, F) and float32 targets (N,). The training and test sequences come
from fixed streams (they never depend on the run's seed), ADDING_SIZES of them (our choice; the papers
draw fresh sequences); the validation split is carved from the training one with the run's seed, as
for images (`--val-size`), and `--train-limit` / `--test-limit` cut the splits as for images.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.errors import UsageError
from .datasets import NamedSplits, fill_splits

SEQUENCE_DATA = ("adding:T",)
ADDING_SIZES = (100_000, 10_000)      # train (before the validation split), test
ADDING_BASELINE_MSE = 2 / 12          # Var(u₁ + u₂), u ~ U(0, 1): the MSE of predicting the mean 1
TRAIN_SEED, TEST_SEED = 19970815, 20150403   # fixed streams
GENERATION_CHUNK = 10_000             # sequences drawn per call (bounds the temporary memory)


def adding_problem(batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (B, T, 2): value and marker, targets (B,): the sum of the two marked values)."""
    values = torch.rand(batch, length, generator=generator)
    first = torch.randint(0, length // 2, (batch,), generator=generator)
    second = torch.randint(length // 2, length, (batch,), generator=generator)
    markers = torch.zeros(batch, length)
    rows = torch.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    return torch.stack([values, markers], -1), (values * markers).sum(1)


def adding_sequences(count: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` adding-problem sequences of the stream `seed`, drawn GENERATION_CHUNK at a time."""
    generator = torch.Generator().manual_seed(seed)
    parts = [adding_problem(min(GENERATION_CHUNK, count - start), length, generator)
             for start in range(0, count, GENERATION_CHUNK)]
    return torch.cat([inputs for inputs, _ in parts]), torch.cat([targets for _, targets in parts])


@dataclass
class SequenceSplit:
    """In-memory sequences: float inputs (N, T, F) and float targets (N,) or (N, K)."""
    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self):
        return len(self.targets)

    def take(self, index: torch.Tensor) -> SequenceSplit:
        return SequenceSplit(self.inputs[index], self.targets[index])

    def fetch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.targets[index]


@dataclass
class SequenceData(NamedSplits):
    name: str
    train: SequenceSplit
    val: SequenceSplit
    test: SequenceSplit

    @property
    def length(self) -> int:
        return self.train.inputs.shape[1]

    @property
    def features(self) -> int:
        return self.train.inputs.shape[2]

    @property
    def outputs(self) -> int:
        """Numbers regressed per sequence."""
        return self.train.targets[0].numel()


def is_sequence_data(spec: str) -> bool:
    return spec.startswith("adding:")


def _adding_length(spec: str) -> int:
    text = spec[len("adding:"):]
    if not text.isdigit() or int(text) < 2:
        raise UsageError(f"--data {spec}: T, the sequence length, must be an integer of at least 2, e.g. adding:50")
    return int(text)


def load_sequence_data(spec: str, *, val_size: float | int = 0.1, seed: int = 0) -> SequenceData:
    """A sequence-regression data set by its spec (SEQUENCE_DATA): fixed train and test sequences, a
    validation split carved from train with `seed` (`val_size`: a fraction or a count)."""
    if not is_sequence_data(spec):
        raise UsageError(f"unknown sequence data set {spec!r}; choose one of {', '.join(SEQUENCE_DATA)}")
    length = _adding_length(spec)
    splits = {"train": SequenceSplit(*adding_sequences(ADDING_SIZES[0], length, TRAIN_SEED)),
              "test": SequenceSplit(*adding_sequences(ADDING_SIZES[1], length, TEST_SEED))}
    splits = fill_splits(splits, val_size, seed)
    return SequenceData(spec, splits["train"], splits["val"], splits["test"])
