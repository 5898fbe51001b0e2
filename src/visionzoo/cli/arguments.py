"""The command-line arguments that several commands take, each declared once: the device, the data root,
the data set of a trained run, the split, the seed, and the `--json`, `--quiet` and `--overwrite` switches.
(`visionzoo train`'s options are declared once as configuration fields, core/options.py; the values these take
are the same constants.)
"""
from __future__ import annotations

from ..core.options import argument, seed_range
from ..core.runtime import DEVICES
from ..data.datasets import DATA_ROOT_HELP, SPLITS


def add_device(parser) -> None:
    parser.add_argument("--device", default="auto", choices=DEVICES, help="default auto: CUDA when present")


def add_trained_data(parser) -> None:
    """`--data` of the commands that take a trained run: by default the data it was trained on."""
    parser.add_argument("--data", help="data set spec (default: the one it was trained on)")


def add_data_dir(parser, help: str = DATA_ROOT_HELP) -> None:
    parser.add_argument("--data-dir", metavar="DIR", help=help)


def add_split(parser, help: str = "the split to use (default test)") -> None:
    parser.add_argument("--split", default="test", choices=SPLITS, help=help)


def add_json(parser, help: str = "one JSON object on stdout") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def add_quiet(parser, what: str = "progress") -> None:
    parser.add_argument("--quiet", action="store_true", help=f"no {what} on stderr")


def add_overwrite(parser, what: str = "the outputs already in --out") -> None:
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what}")


def add_seed(parser, help: str = "default 0", default: int = 0) -> None:
    parser.add_argument("--seed", type=argument(int, seed_range), default=default, help=help)
