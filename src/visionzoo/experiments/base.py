"""The notes, executable: each claim of the lecture notes (/work/shared/seeds) as an experiment.

An experiment has a name, the claim it tests, the section of the notes it comes from (file and
heading) and a `run(ctx) -> Outcome`. The budget picks its size: `smoke` checks the machinery in a
few seconds, `quick` is enough to see the effect on a 2-core CPU (≤ 3 min), `full` is the serious
version sized for the same CPU (tens of thousands of images, several epochs: 3–20 min each). The
verdict — held, did not hold, inconclusive — is computed from the data by the experiment itself;
`visionzoo reproduce` only writes it down (see report.py).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..core.errors import UsageError

BUDGETS = ("smoke", "quick", "full")
HELD, NOT_HELD, INCONCLUSIVE = "held", "did not hold", "inconclusive"
NOTES = {"000": "000_e96df65c1af0f638.txt", "001": "001_567742d75749625f.txt",
         "002": "002_9472858059750a08.txt", "003": "003_5a47d36ff1978e01.txt",
         "004": "004_30b5e5b740003981.txt"}
# What each file of the notes covers (their index, /work/shared/seeds/README.md), for readers who
# do not know the files by their hashed names.
NOTE_TITLES = {"000_e96df65c1af0f638.txt": "paper digests", "001_567742d75749625f.txt": "more on CNN",
               "002_9472858059750a08.txt": "a paper-by-paper course",
               "003_5a47d36ff1978e01.txt": "a broader deep-learning course",
               "004_30b5e5b740003981.txt": "design patterns"}


@dataclass
class Outcome:
    """What an experiment found: the verdict, a paragraph saying why, and the data behind it."""
    verdict: str
    result: str
    setup: str
    data: dict
    figures: list[str] = field(default_factory=list)
    table: list[dict] = field(default_factory=list)


@dataclass
class Context:
    budget: str
    out: Path
    seed: int
    resume: bool = False  # continue the Trainer runs already in out/runs (see common.train_registered)
    quiet: bool = False   # no progress lines on stderr

    def pick(self, smoke, quick, full):
        return {"smoke": smoke, "quick": quick, "full": full}[self.budget]

    @property
    def device(self) -> torch.device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Experiment:
    name: str
    claim: str
    notes: str       # file of /work/shared/seeds
    heading: str     # the heading in that file the claim is under
    run: Callable[[Context], Outcome]

    @property
    def section(self) -> str:
        """The heading first, then the notes' file by what it covers and by name."""
        return f"“{self.heading}”, notes {self.notes[:3]} ({NOTE_TITLES[self.notes]}, {self.notes})"


EXPERIMENTS: dict[str, Experiment] = {}


def experiment(name: str, *, claim: str, notes: str, heading: str):
    """Register `run(ctx) -> Outcome` under `name`; `notes` is the seed file's number ("003")."""
    def register(run):
        EXPERIMENTS[name] = Experiment(name, claim, NOTES[notes], heading, run)
        return run
    return register


def verdict(held: bool, conclusive: bool = True) -> str:
    return INCONCLUSIVE if not conclusive else HELD if held else NOT_HELD


def get_experiment(name: str) -> Experiment:
    from . import catalogue  # noqa: F401  (registers every experiment)
    if name not in EXPERIMENTS:
        close = difflib.get_close_matches(name, list(EXPERIMENTS), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown experiment {name!r}{hint} (see `visionzoo reproduce --list`)")
    return EXPERIMENTS[name]


def all_experiments() -> list[Experiment]:
    from . import catalogue  # noqa: F401
    return [EXPERIMENTS[n] for n in sorted(EXPERIMENTS)]
