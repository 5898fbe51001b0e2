"""`visionzoo reproduce NAME [--budget smoke|quick|full] [--out DIR] [--seed S] [--resume]` and `--list`.

Runs one experiment of visionzoo.experiments (a claim of the lecture notes) and writes
results.json, its PNG figures, report.md and report.html into --out.
"""
from __future__ import annotations

import argparse
import signal
import sys

from ..core.errors import UsageError
from ..core.progress import note
from .arguments import add_overwrite, add_quiet, add_seed


def add_commands(commands) -> None:
    from ..experiments.base import BUDGETS
    parser = commands.add_parser("reproduce", help="run one of the notes' claims as an experiment",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", metavar="NAME", help="experiment (see --list)")
    parser.add_argument("--list", action="store_true", help="list the experiments and the notes' sections")
    parser.add_argument("--budget", default="quick", choices=BUDGETS,
                        help="smoke: seconds, checks the machinery; quick: ≤ 3 min on a 2-core CPU; full: the serious run, "
                             "3–20 min each on the same CPU")
    parser.add_argument("--out", metavar="DIR", help="output directory (default: reproduce/NAME)")
    add_seed(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue the training runs an interrupted (or earlier) run left in --out: runs with "
                             "the same settings go on from their last checkpoint, finished ones are reused")
    add_overwrite(parser)
    add_quiet(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..experiments import all_experiments, get_experiment, reproduce
    if args.list:
        experiments = all_experiments()
        width = max(len(e.name) for e in experiments)
        for exp in experiments:
            print(f"{exp.name:<{width}}  {exp.section}\n{'':<{width}}  {exp.claim}")
        return 0
    if not args.name:
        raise UsageError("reproduce: give an experiment NAME or --list")
    if args.resume and args.overwrite:
        raise UsageError("--overwrite replaces the runs and --resume continues them; give one of them")
    exp = get_experiment(args.name)
    out = args.out or f"reproduce/{exp.name}"
    from ..core.rundir import claim_output
    from ..engine.trainer import Interrupted
    # its training runs (runs/) are kept by --resume, replaced by --overwrite
    try:
        with claim_output(out, ("results.json", "report.md", "report.html", "runs"), overwrite=args.overwrite,
                          resume=args.resume):
            note(f"{exp.name} ({args.budget}): running into {out}", quiet=args.quiet)
            results = reproduce(exp, args.budget, out, args.seed, args.resume, quiet=args.quiet)
    except (Interrupted, KeyboardInterrupt) as stop:
        # a Trainer stopped by Ctrl-C or SIGTERM has saved its checkpoint; finished runs are kept
        print(f"interrupted: the training runs so far are kept in {out}/runs; continue with `visionzoo reproduce "
              f"{exp.name} --budget {args.budget} --out {out} --seed {args.seed} --resume`", file=sys.stderr)
        return 128 + int(getattr(stop, "signum", signal.SIGINT))
    print(f"{exp.name} ({args.budget}, {results['seconds']:.1f} s): {results['verdict']} — {results['result']}")
    print(f"report: {out}/report.md")
    return 0
