"""`visionzoo attack CHECKPOINT --method ...`: robustness of a trained checkpoint (visionzoo.attacks).

Reports clean accuracy, robust accuracy, attack success rate, mean ℓ∞/ℓ2 size of the
perturbations, model queries and seconds; `--out DIR` writes attack.json and attack.png (the
panda figure: clean / perturbation ×10 / adversarial with predicted labels and confidences).
"""
from __future__ import annotations

from pathlib import Path

from ..core.errors import UsageError
from ..core.io import json_text
from ..core.options import argument, at_least, positive
from .arguments import (
    add_data_dir,
    add_device,
    add_json,
    add_overwrite,
    add_quiet,
    add_seed,
    add_split,
    add_trained_data,
)

METHODS = ("fgsm", "pgd", "lbfgs", "onepixel", "substitute", "noise")
NEEDS_EPS = ("fgsm", "pgd", "substitute", "noise")
TARGETED = ("fgsm", "pgd", "lbfgs", "onepixel")


def _target(text: str | None):
    if text is None or text in ("random", "least_likely"):
        return text
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--target {text!r}: give random, least_likely or a class index") from None


def _check(args, num_classes: int) -> None:
    if args.eps is None and args.method in NEEDS_EPS:
        raise UsageError(f"--method {args.method} needs --eps (pixels of [0, 1], e.g. 0.1)")
    if args.eps is not None and not 0 < args.eps <= (1 if args.norm == "linf" else float("inf")):
        raise UsageError(f"--eps {args.eps}: ε is in pixels of [0, 1]; give 0 < ε ≤ 1 for ℓ∞")
    if args.target is not None and args.method not in TARGETED:
        raise UsageError(f"--target: {args.method} is untargeted here; targeted methods: {', '.join(TARGETED)}")
    if isinstance(args.target, int) and not 0 <= args.target < num_classes:
        raise UsageError(f"--target {args.target}: the model has classes 0..{num_classes - 1}")
    if args.norm == "l2" and args.method != "pgd":
        raise UsageError("--norm l2 applies to --method pgd only")
    for name in ("n", "steps", "restarts", "batch_size", "popsize", "pixels", "rounds", "seed_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")


def _factory(args, model, data, device):
    """make_attack(batch_targets) for `run_attack`; black-box attacks are built once."""
    import torch

    from .. import attacks
    steps = args.steps or 40
    if args.method == "substitute":
        seeds = data.val.fetch(torch.arange(min(args.seed_size, len(data.val))))[0].to(device).float() / 255
        attack = attacks.SubstituteAttack(model, args.eps, seeds, len(data.classes), rounds=args.rounds,
                                          seed=args.seed)
        return lambda targets: attack
    if args.method == "noise":
        attack = attacks.RandomNoise(model, args.eps, seed=args.seed)
        return lambda targets: attack
    if args.method == "fgsm":
        # Targeted FGSM is one PGD step of size ε from x, toward each sample's own target.
        return lambda targets: attacks.FGSM(model, args.eps) if targets is None else \
            attacks.PGD(model, args.eps, args.eps, 1, random_start=False, target=targets)
    if args.method == "pgd":
        # 2.5·ε/K lets K steps cross the ball 2.5 times, so the walk can reach its surface from any
        # random start (Madry et al.'s MNIST run used α = 0.01, K = 40 at ε = 0.3: give --alpha).
        alpha = args.alpha or 2.5 * args.eps / steps
        return lambda targets: attacks.PGD(model, args.eps, alpha, steps, restarts=args.restarts,
                                           norm=args.norm, target=targets, seed=args.seed)
    if args.method == "lbfgs":
        return lambda targets: attacks.LBFGS(model, args.eps, target=targets, max_iter=args.steps or 50,
                                             seed=args.seed)
    return lambda targets: attacks.OnePixel(model, pixels=args.pixels, popsize=args.popsize,
                                            max_iter=args.steps or 100, target=targets, eps=args.eps,
                                            seed=args.seed)


def run_attack_command(args) -> int:
    if not args.out:
        return _attack(args)
    from ..core.rundir import claim_output
    with claim_output(args.out, ("attack.json", "attack.png"), overwrite=args.overwrite):
        return _attack(args)


def _attack(args) -> int:
    import torch

    from ..attacks import Normalized, choose_targets
    from ..attacks.report import plot_adversarial_grid, run_attack
    from ..core.io import write_json
    from ..core.probe import check_trained_input
    from ..core.runtime import resolve_device
    from ..data.datasets import load_data, trained_data_args
    from ..weights import CLASSIFIER_EXAMPLE, check_data_fits, check_task, load_checkpoint
    args.target = _target(args.target)
    model, meta = load_checkpoint(args.checkpoint)
    check_task(meta, args.checkpoint, "classification", "attack", CLASSIFIER_EXAMPLE)
    _check(args, len(meta["classes"]))
    device = resolve_device(args.device)
    spec = args.data or meta["data"]
    data = load_data(spec, data_dir=args.data_dir, lazy=True, **trained_data_args(meta, spec))
    check_data_fits(meta, data, spec)
    check_trained_input(model, data.input_size, meta["input_size"], f"--data {spec}")
    split = data.split(args.split)
    n = min(args.n, len(split))
    images, labels = split.fetch(torch.arange(n))
    images, labels = images.to(device).float() / 255, labels.to(device)
    pixel_model = Normalized(model, meta["mean"], meta["std"]).to(device).eval()
    targets = None
    if args.target is not None:
        with torch.no_grad():
            logits = torch.cat([pixel_model(images[i:i + args.batch_size]) for i in range(0, n, args.batch_size)])
        targets = choose_targets(args.target, logits, labels, torch.Generator().manual_seed(args.seed))
    try:
        metrics, tensors = run_attack(_factory(args, pixel_model, data, device), pixel_model, images, labels,
                                      batch_size=args.batch_size, targets=targets, quiet=args.quiet)
    except ValueError as exc:  # an attack's own check of its settings
        raise UsageError(f"--method {args.method}: {exc}") from None
    report = {"method": args.method, "eps": args.eps, **metrics, "norm": args.norm, "target": args.target,
              "split": args.split, "model": meta["name"], "data": args.data or meta["data"],
              "checkpoint": str(args.checkpoint)}
    if args.method == "pgd":
        report.update(steps=args.steps or 40, restarts=args.restarts)
    if args.out:
        out = Path(args.out)
        write_json(out / "attack.json", report)
        eps = "" if args.eps is None else f", ε = {args.eps:g}"
        plot_adversarial_grid(tensors, meta["classes"], out / "attack.png",
                              f"{args.method}{eps} on {meta['name']}: robust accuracy "
                              f"{report['robust_acc']:.3f} (clean {report['clean_acc']:.3f})")
    if args.json:
        print(json_text(report))
    else:
        print(f"{args.method} on {meta['name']} ({report['data']} {args.split}, {n} images"
              f"{'' if args.eps is None else f', ε = {args.eps:g} ' + args.norm}): clean {report['clean_acc']:.4f}  "
              f"robust {report['robust_acc']:.4f}  success {report['success_rate']:.4f}  "
              f"mean ℓ∞ {report['mean_linf']:.4f}  mean ℓ2 {report['mean_l2']:.4f}  "
              f"queries {report['queries']}  {report['seconds']:.1f}s")
    return 0


def add_commands(commands) -> None:
    p = commands.add_parser("attack", help="adversarial robustness of a trained checkpoint")
    p.add_argument("checkpoint", help="run directory or its model.safetensors")
    p.add_argument("--method", required=True, choices=METHODS,
                   help="fgsm, pgd, lbfgs (Szegedy), onepixel (DE), substitute (black box), noise (control)")
    p.add_argument("--eps", type=argument(float, at_least(0)), help="ε in pixels of [0, 1] (optional for lbfgs and onepixel)")
    g = p.add_argument_group("attack settings")
    g.add_argument("--alpha", type=argument(float, positive), help="PGD step size (default 2.5·ε/steps)")
    g.add_argument("--steps", type=argument(int, positive), help="PGD steps (40), L-BFGS iterations (50), DE generations (100)")
    g.add_argument("--restarts", type=argument(int, positive), default=1, help="PGD random restarts (default 1)")
    g.add_argument("--norm", choices=("linf", "l2"), default="linf", help="PGD ball (default linf)")
    g.add_argument("--target", help="random, least_likely or a class index (default: untargeted)")
    g.add_argument("--popsize", type=argument(int, positive), default=400, help="one-pixel population (default 400)")
    g.add_argument("--pixels", type=argument(int, positive), default=1, help="one-pixel: pixels changed (default 1)")
    g.add_argument("--rounds", type=argument(int, at_least(0)), default=6, help="substitute: augmentation rounds ρ (default 6)")
    g.add_argument("--seed-size", type=argument(int, positive), default=150, help="substitute: seed images from the val split (150)")
    add_seed(g)
    g = p.add_argument_group("data and output")
    g.add_argument("--n", type=argument(int, positive), default=1000, help="images attacked: the first N of the split (default 1000)")
    add_split(g)
    add_trained_data(g)
    add_data_dir(g)
    g.add_argument("--batch-size", type=argument(int, positive), default=250)
    add_device(g)
    g.add_argument("--out", help="write attack.json and attack.png here")
    add_json(g)
    add_quiet(g)
    add_overwrite(g, "the attack.json and attack.png in --out")
    p.set_defaults(run=run_attack_command)
