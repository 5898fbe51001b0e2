"""Running an experiment and writing what it found: results.json, report.md, report.html.

All three are written atomically (train/io.py) after the experiment's figures, so a directory
with a report.md always has the figures and data the report talks about.
"""
from __future__ import annotations

import html
import platform
import time
from pathlib import Path

import torch

from ..core.errors import UsageError
from ..core.io import write_json, write_text
from .base import BUDGETS, Context, Experiment, Outcome


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _markdown(exp: Experiment, outcome: Outcome, header: dict) -> str:
    lines = [f"# {exp.name}", "", f"**Claim** ({exp.section}): {exp.claim}", "",
             f"**Setup** (budget `{header['budget']}`, seed {header['seed']}, {header['device']}, "
             f"{header['seconds']:.1f} s): {outcome.setup}", "",
             f"**Result**: {outcome.result}", "", f"**Verdict**: {outcome.verdict}", ""]
    if outcome.table:
        columns = list(outcome.table[0])
        lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in outcome.table]
        lines.append("")
    lines += [f"![{name}]({name})" for name in outcome.figures]
    return "\n".join(lines) + "\n"


def _html(exp: Experiment, outcome: Outcome, header: dict) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(exp.name)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
             "img{max-width:100%}</style></head><body>",
             f"<h1>{e(exp.name)}</h1>",
             f"<p><b>Claim</b> ({e(exp.section)}): {e(exp.claim)}</p>",
             f"<p><b>Setup</b> (budget {e(header['budget'])}, seed {header['seed']}, {e(header['device'])}, "
             f"{header['seconds']:.1f} s): {e(outcome.setup)}</p>",
             f"<p><b>Result</b>: {e(outcome.result)}</p>",
             f"<p><b>Verdict</b>: <b>{e(outcome.verdict)}</b></p>"]
    if outcome.table:
        columns = list(outcome.table[0])
        parts.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
                  for row in outcome.table]
        parts.append("</table>")
    parts += [f"<p><img src='{e(name)}' alt='{e(name)}'></p>" for name in outcome.figures]
    return "\n".join(parts + ["</body></html>"]) + "\n"


def reproduce(exp: Experiment, budget: str, out, seed: int = 0, resume: bool = False, quiet: bool = False) -> dict:
    """Run `exp` at `budget` into directory `out`; returns the results.json contents.

    With `resume`, Trainer runs already in out/runs with the same settings are continued from their
    last checkpoint (reused as they are when finished) instead of trained again. Unless `quiet`,
    each training run is announced on stderr.
    """
    if budget not in BUDGETS:
        raise UsageError(f"--budget {budget!r}: choose one of {', '.join(BUDGETS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(budget, out, seed, resume, quiet)
    torch.manual_seed(seed)
    started = time.perf_counter()
    outcome = exp.run(ctx)
    header = {"experiment": exp.name, "claim": exp.claim, "notes": exp.notes, "heading": exp.heading,
              "budget": budget, "seed": seed, "device": str(ctx.device),
              "seconds": round(time.perf_counter() - started, 2),
              "torch": torch.__version__, "python": platform.python_version()}
    missing = [name for name in outcome.figures if not (out / name).exists()]
    if missing:
        raise RuntimeError(f"{exp.name} listed figures it did not write: {', '.join(missing)}")
    results = {**header, "verdict": outcome.verdict, "result": outcome.result, "setup": outcome.setup,
               "figures": outcome.figures, "table": outcome.table, "data": outcome.data}
    write_json(out / "results.json", results)
    write_text(out / "report.md", _markdown(exp, outcome, header))
    write_text(out / "report.html", _html(exp, outcome, header))
    return results
