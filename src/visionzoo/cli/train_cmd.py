"""`visionzoo train`: its options are generated from `TrainConfig`'s option groups (core/options.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core.errors import UsageError
from ..core.options import add_options, flag_of, given_options
from ..engine.recipes import apply_recipe, describe_recipes
from ..engine.trainer import RunOptions, TrainConfig, saved_config


def _refuse_changes_on_resume(fields: dict, resume: str) -> None:
    """--resume continues a run exactly, with the settings saved in its config.json: an option that
    would change one of them is refused rather than silently ignored."""
    saved = saved_config(Path(resume))
    changed = [name for name, value in fields.items() if name not in ("out", "quiet") and name in saved
               and json.loads(json.dumps(value)) != saved[name]]
    if fields.get("out") and Path(fields["out"]).resolve() != Path(resume).resolve():
        changed.append("out")
    if changed:
        options = ", ".join(flag_of(TrainConfig.__dataclass_fields__[name]) for name in changed)
        raise UsageError(f"--resume {resume} continues that run with its saved settings, which {options} "
                         f"would change; drop {'it' if len(changed) == 1 else 'them'}, or start a new run")


def run_train(args) -> int:
    from ..engine.trainer import Interrupted, NonFiniteLoss, train
    fields = given_options(TrainConfig, args)
    if args.recipe == "list":
        print(describe_recipes())
        return 0
    if args.recipe:
        fields = apply_recipe(args.recipe, fields)
    if args.resume:
        _refuse_changes_on_resume(fields, args.resume)
    try:
        train(TrainConfig(**fields), resume=args.resume)
    except Interrupted as stop:
        print(f"interrupted: checkpoint saved in {args.out or args.resume}; continue with --resume", file=sys.stderr)
        return 128 + int(stop.signum)   # 130 for Ctrl-C, 143 for SIGTERM, as the shell reports them
    except NonFiniteLoss as exc:
        where = args.out or args.resume
        kept = (f"the last good checkpoint is kept in {where}" if where and (Path(where) / "checkpoint.pt").exists()
                else "no checkpoint had been saved yet")
        print(f"error: {exc}; stopped, {kept} (try a lower --lr or --clip-grad)", file=sys.stderr)
        return 1
    return 0


def add_commands(commands) -> None:
    p = commands.add_parser("train", help="train a network; writes the run directory given by --out")
    sections = add_options(p, TrainConfig)
    sections[RunOptions].add_argument("--resume", metavar="DIR",
                                      help="continue the run in DIR from its last checkpoint")
    p.set_defaults(run=run_train)
