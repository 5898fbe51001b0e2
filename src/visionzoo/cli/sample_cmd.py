"""`visionzoo sample RUN --out DIR`: samples of a trained generative run, or text of a language run.

A GAN run (task "generative") writes `grid.png` and one PNG per sample (`samples/0000.png`, …) into
`--out`, all atomically: `--n` samples from the noise of `--seed` (the saved weights are the EMA of the
weights when the run was trained with `--ema`). A conditional network draws class `--class` (index or
name), or, without it, one row per class; `--truncation ψ` is StyleGAN's truncation trick in W
(w' = w̄ + ψ(w − w̄)) and is refused for other networks. A DiscoGAN run translates the first `--n` test
images of domain A to B and back and those of B to A (rows as the run's samples.png); a run on 2-D
points writes `samples.png` (a scatter plot over the data) and `samples.csv`, a DiscoGAN run on two domains
of points (toy-domains) the same of G_AB(x_A) for the first `--n` test points of A, over B's. A language run
(task "language") is handed to `language_cmd.run_language_sample` with `--prompt`, `--temperature` or
`--bias`, and `--length`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..core.errors import UsageError
from ..core.options import argument, positive
from ..core.rundir import make_directory
from .arguments import add_data_dir, add_device, add_json, add_seed

TEXT_OPTIONS = ("prompt", "temperature", "bias", "length")


def _class_index(text: str, classes: list[str]) -> int:
    """--class as an index or a class name."""
    if text in classes:
        return classes.index(text)
    try:
        index = int(text)
    except ValueError:
        index = -1
    if not 0 <= index < len(classes):
        raise UsageError(f"--class {text!r}: give an index 0..{len(classes) - 1} or a name ({', '.join(classes)})")
    return index


def _check_options(args, model, meta: dict) -> None:
    given = [name for name in TEXT_OPTIONS if getattr(args, name) is not None]
    if given:
        raise UsageError(f"--{given[0]} is for language runs; {args.run_dir} is a generative run")
    if args.truncation is not None and meta.get("kind") != "stylegan":
        raise UsageError(f"--truncation is StyleGAN's truncation trick; {meta['name']} has no mapping network")
    if args.class_ is not None and not model.num_classes:
        raise UsageError(f"--class: {meta['name']} is unconditional; it draws no chosen class")


def run_sample(args) -> int:
    from ..weights import check_task, load_checkpoint
    model, meta = load_checkpoint(args.run_dir)
    if meta.get("task") == "language":
        from .language_cmd import run_language_sample
        return run_language_sample(args, model, meta)
    check_task(meta, args.run_dir, "generative", "sample", "--model dcgan; or a language run")
    _check_options(args, model, meta)
    from ..core.runtime import resolve_device
    device = resolve_device(args.device)
    model = model.to(device).eval()
    out = make_directory(args.out)
    if meta.get("kind") == "discogan" and "output_shape" in meta:
        written = _points(args, model, meta, out, device, translated=True)
    elif meta.get("kind") == "discogan":
        written = _translations(args, model, meta, out, device)
    elif "output_shape" in meta:
        written = _points(args, model, meta, out, device)
    else:
        written = _images(args, model, meta, out, device)
    report = {"run": str(args.run_dir), "model": meta["name"], "seed": args.seed, "out": str(out), **written}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['n']} samples of {meta['name']} written to {out} ({', '.join(written['files'][:2])}"
              f"{', …' if len(written['files']) > 2 else ''})")
    return 0


def _images(args, model, meta: dict, out: Path, device) -> dict:
    import torch

    from ..tasks.generative import sample, save_image, save_image_grid, to_uint8
    classes = meta.get("classes") or []
    if model.num_classes and args.class_ is None:        # one row per class
        per_class = max(1, math.ceil(args.n / model.num_classes))
        labels = torch.arange(model.num_classes).repeat_interleave(per_class)
        rows = model.num_classes
    else:
        labels = None if not model.num_classes else torch.full((args.n,), _class_index(args.class_, classes))
        rows = max(1, round(math.sqrt(args.n)))
    kwargs = {} if args.truncation is None else {"truncation": args.truncation}
    images = to_uint8(sample(model, len(labels) if labels is not None else args.n, seed=args.seed, labels=labels,
                             device=device, **kwargs))
    save_image_grid(images, out / "grid.png", rows=rows)
    files = ["grid.png"]
    for i, image in enumerate(images):
        name = f"samples/{i:04d}.png"
        save_image(image, out / name)
        files.append(name)
    shown = {"class": [classes[k] for k in labels.unique().tolist()] if labels is not None and classes else None}
    return {"n": len(images), "files": files, **shown, "truncation": args.truncation}


def _translations(args, model, meta: dict, out: Path, device) -> dict:
    from ..data.generative import load_generative_data
    from ..tasks.generative import (
        carve_splits,
        first,
        save_image_grid,
        scale_images,
        split_domains,
        translate,
        translation_rows,
    )
    data = load_generative_data(meta["data"], data_dir=args.data_dir, **meta.get("data_args", {}))
    domains = split_domains(carve_splits(data, val_size=meta["data_args"]["val_size"],
                                         seed=meta["data_args"]["seed"]))
    a, b = domains["test"]
    x_a, x_b = first(a, args.n)[0], first(b, args.n)[0]
    ab, ba = (translate(model, scale_images(x), direction, device=device) for x, direction in ((x_a, "ab"), (x_b, "ba")))
    save_image_grid(translation_rows(model, x_a, x_b, ab, ba, device=device, count=args.n), out / "grid.png", rows=6)
    return {"n": min(len(x_a), len(x_b)), "files": ["grid.png"],
            "rows": ["A", "A→B", "A→B→A", "B", "B→A", "B→A→B"], "domains": meta.get("domains")}


def _points(args, model, meta: dict, out: Path, device, translated: bool = False) -> dict:
    from ..core.io import write_text
    from ..data.generative import load_generative_data
    from ..tasks.generative import plot_points, sample, translate
    data = load_generative_data(meta["data"], data_dir=args.data_dir, **meta.get("data_args", {}))
    if translated:   # G_AB of A's first test points, drawn over B
        points = translate(model, data.test[data.test_labels == 0][:args.n], "ab", device=device)
        real, modes, what = data.test[data.test_labels == 1], data.domain_modes[1], "translations A → B"
    else:
        points = sample(model, args.n, seed=args.seed, device=device)
        real, modes, what = data.test, data.modes, "samples"
    plot_points(real, points, modes, out / "samples.png", f"{len(points)} {what} of {meta['name']}")
    write_text(out / "samples.csv", "".join(",".join(f"{v:.6g}" for v in row) + "\n" for row in points.tolist()))
    return {"n": len(points), "files": ["samples.png", "samples.csv"]}


def add_commands(commands) -> None:
    p = commands.add_parser("sample", help="draw samples of a generative run (PNG grid and files) or text of a "
                                           "language run")
    p.add_argument("run_dir", metavar="RUN", help="run directory (or its model.safetensors)")
    p.add_argument("--n", type=argument(int, positive), default=64, help="samples (default 64)")
    p.add_argument("--class", dest="class_", metavar="K", help="conditional GANs: this class (index or name); "
                                                               "default one row per class")
    p.add_argument("--truncation", type=argument(float, lambda v: None), metavar="PSI",
                   help="StyleGAN: w' = w̄ + ψ(w − w̄) (1 = none)")
    add_seed(p, help="noise seed (default 0)")
    p.add_argument("--prompt", metavar="TEXT", help="language runs: the text to continue")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--temperature", type=argument(float, positive), metavar="T",
                       help="language runs: sampling temperature")
    group.add_argument("--bias", type=argument(float, lambda v: None), metavar="B",
                       help="language runs: Graves' sampling bias")
    p.add_argument("--length", type=argument(int, positive), metavar="L", help="language runs: characters/tokens")
    p.add_argument("--out", required=True, metavar="DIR", help="write the samples here")
    add_data_dir(p, help="data root, for runs whose samples show data (DiscoGAN, points)")
    add_device(p)
    add_json(p)
    p.set_defaults(run=run_sample)
