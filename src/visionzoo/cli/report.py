"""How `visionzoo eval` reports a run of any task: one JSON object with `--json` (NaN and ±inf as
null), otherwise one headline — "<model> on <data> <split> (<n> <examples>): <measures>" — and, for
tasks with classes, one indented row per class."""
from __future__ import annotations

from ..core.io import json_text


def measures_text(result: dict, *keys: str) -> str:
    """`key value` for each key, four decimals, two spaces apart."""
    return "  ".join(f"{key} {result[key]:.4f}" for key in keys)


def print_evaluation(args, result: dict, examples: str, measures: str, rows: dict[str, str] | None = None) -> int:
    """Print `result` (with "model", "data", "split" and "n") as the eval commands do; 0 for main."""
    if args.json:
        print(json_text(result))
        return 0
    print(f"{result['model']} on {result['data']} {result['split']} ({result['n']:,} {examples}): {measures}")
    if rows:
        width = max(len(name) for name in rows)
        for name, shown in rows.items():
            print(f"  {name:<{width}}  {shown}")
    return 0
