"""`visionzoo models` (the zoo against its papers) and `visionzoo info` (per-layer table)."""
from __future__ import annotations

from ..core.io import json_text
from ..core.options import argument, positive
from .arguments import add_json, add_quiet


def _fmt(n, unit=""):
    if n is None:
        return "-"
    if isinstance(n, str):
        return n
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def run_models(args) -> int:
    from ..registry import list_models, model_cards, verify_card
    names = list_models(args.pattern, task=args.task, family=args.family)
    if not names:
        from ..core.errors import UsageError
        which = " ".join(["no", *(w for w in (args.family, args.task) if w), "model"])
        matching = f" matches {args.pattern!r}" if args.pattern else " is registered"
        raise UsageError(f"{which}{matching}; see `visionzoo models`")
    cards = model_cards(names, quiet=args.quiet)   # measured once, then read from the card cache
    failures = 0
    if args.json:
        for card in cards:
            card["match"], card["verdict"] = verify_card(card)
        print(json_text(cards, indent=2))
        return 1 if args.verify and not all(c["match"] for c in cards) else 0
    name_width = max([24, *(len(c["name"]) for c in cards)])
    family_width = max([12, *(len(c["family"]) for c in cards)])
    header = f"{'name':<{name_width}} {'family':<{family_width}} {'year':>4} {'params':>9} {'paper':>7} {'MACs':>9} {'paper':>7}  match"
    print(header)
    for card in cards:
        ok, verdict = verify_card(card)
        failures += not ok
        line = (f"{card['name']:<{name_width}} {card['family']:<{family_width}} {card['year']:>4} {_fmt(card['params']):>9} "
                f"{_fmt(card['paper_params']):>7} {_fmt(card['macs']):>9} {_fmt(card['paper_macs']):>7}  "
                f"{verdict if args.verify else _short(verdict)}")
        print(line)
    if args.verify:
        print(f"{len(cards) - failures}/{len(cards)} match their papers")
        return 1 if failures else 0
    return 0


def _short(verdict: str) -> str:
    """The table's match column: ok, documented (a difference the card explains), MISMATCH, or -."""
    return "-" if verdict == "no paper figures" else verdict.split(" ")[0]


def run_info(args) -> int:
    from ..core.profile import count_macs, count_params, layer_table
    from ..registry import create_model, get_entry
    entry = get_entry(args.name)
    size = tuple(args.input_size) if args.input_size else entry.input_size
    # built as its card is, unless another input is asked for (a generator's or a sequence model's input is no image)
    kwargs = {"image_size": size[-1], "in_chans": size[0]} if args.input_size else {}
    if args.num_classes:
        kwargs["num_classes"] = args.num_classes
    model = create_model(args.name, **kwargs)
    if not args.input_size:   # the part its card measures, on that part's input (a GAN: its generator and z)
        model, size = getattr(model, "card_module", model), tuple(getattr(model, "card_input_size", size))
    if args.receptive_field:
        from ..explain.receptive import receptive_field_table, trace_receptive_fields
        print(f"{args.name}: receptive field r, jump j and first centre of every layer; input {size}")
        print(receptive_field_table(trace_receptive_fields(model, size)))
        return 0
    rows = layer_table(model, size, depth=args.depth)
    print(f"{args.name}: {entry.paper} ({entry.year}); input {size}")
    print(f"{'layer':<40} {'type':<20} {'output':<18} {'params':>12} {'MACs':>14}")
    for row in rows:
        indent = "  " * row["layer"].count(".")
        print(f"{indent + row['layer']:<40} {row['type']:<20} {str(row['output'] or '-'):<18} "
              f"{row['params']:>12,} {row['macs']:>14,}")
    print(f"{'total':<80} {count_params(model):>12,} {count_macs(model, size):>14,}")
    return 0


def add_commands(commands) -> None:
    from ..registry import TASKS
    p = commands.add_parser("models", help="list the zoo with measured vs paper params and MACs")
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'resnet*'")
    p.add_argument("--task", choices=TASKS, help="only the networks of this task")
    p.add_argument("--family", help="only the networks of this family, e.g. resnet")
    add_quiet(p, "progress while cards are measured")
    p.add_argument("--verify", action="store_true", help="print each verdict in full; exit 1 if a network misses its paper's figures")
    add_json(p, help="print the model cards as JSON")
    p.set_defaults(run=run_models)
    p = commands.add_parser("info", help="per-layer table of one network: output shape, params, MACs")
    p.add_argument("name")
    p.add_argument("--input-size", type=argument(int, positive), nargs=3, metavar=("C", "H", "W"))
    p.add_argument("--num-classes", type=int)
    p.add_argument("--depth", type=int, default=2, help="module nesting depth to show (default 2)")
    p.add_argument("--receptive-field", action="store_true",
                   help="per-layer receptive field size, jump and start instead")
    p.set_defaults(run=run_info)
