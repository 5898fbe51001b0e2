"""`visionzoo` / `python -m visionzoo`: models, info, train, eval, segment, detect, sample, translate, bench,
attack, compress, explain, reproduce.

Exit status: 0 success; 2 bad usage or bad input (one line on stderr); 1 any other failure
(`--debug` shows the traceback); 130 interrupted by Ctrl-C after saving a checkpoint.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback

from ..core.errors import UsageError
from . import (
    attack_cmd,
    bench_cmd,
    compress_cmd,
    detect_cmd,
    evaluate_cmd,
    explain_cmd,
    models_cmd,
    reproduce_cmd,
    sample_cmd,
    segment_cmd,
    train_cmd,
    translate_cmd,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see --help)")


class _Version(argparse.Action):
    """`--version`: printed lazily, so that building the parser never imports torch; read from the
    package itself, so that a source tree on PYTHONPATH (not pip-installed) answers too."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        import torch

        import visionzoo
        print(f"visionzoo {visionzoo.__version__} (torch {torch.__version__})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="visionzoo", description=__doc__.split("\n\n")[0].replace("\n", " "),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    parser.add_argument("--version", action=_Version, help="print visionzoo's and torch's versions and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (models_cmd, train_cmd, evaluate_cmd, segment_cmd, bench_cmd, attack_cmd, compress_cmd,
                   explain_cmd, reproduce_cmd, sample_cmd, detect_cmd, translate_cmd):
        module.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    if debug:   # accepted anywhere on the line, not only before the command
        argv = ["--debug"] + [a for a in argv if a != "--debug"]
    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "run", None):
            build_parser().print_help()
            return 2
        return args.run(args) or 0
    except UsageError as exc:
        return _fail(f"error: {exc}", 2, debug)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # the reader stopped early (`| head`): silent, as a Unix tool killed by SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # the exit's flush has nowhere to fail
        return 128 + signal.SIGPIPE
    except Exception as exc:  # anything else is a failure, reported in one line
        return _fail(f"error: {type(exc).__name__}: {exc}" + ("" if debug else " (rerun with --debug for the traceback)"),
                     1, debug)


def _fail(line: str, status: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(line, file=sys.stderr)
    return status
