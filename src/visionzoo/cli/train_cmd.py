"""`visionzoo train`: every option of `TrainConfig`, grouped as in the notes."""
from __future__ import annotations

import json

from ..attacks.training import ADVERSARIAL_TRAINING
from ..errors import UsageError
from ..train.recipes import apply_recipe, describe_recipes
from ..train.trainer import OPTIMIZERS, SCHEDULES, TrainConfig


def _model_arg(text: str):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--model-arg {text!r}: write KEY=VALUE, e.g. shortcut=A")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def run_train(args) -> int:
    from ..train.trainer import Interrupted, NonFiniteLoss, train
    d = TrainConfig()
    fields = {k: v for k, v in vars(args).items() if k in d.__dataclass_fields__ and v is not None}
    fields["model_args"] = dict(_model_arg(a) for a in args.model_arg or [])
    if args.recipe == "list":
        print(describe_recipes())
        return 0
    if args.recipe:
        fields = apply_recipe(args.recipe, fields)
    try:
        train(TrainConfig(**fields), resume=args.resume)
    except Interrupted:
        print(f"interrupted: checkpoint saved in {args.out or args.resume}; continue with --resume", flush=True)
        return 130
    except NonFiniteLoss as exc:
        where = args.out or args.resume
        print(f"error: {exc}; stopped, the last good checkpoint is kept"
              f"{' in ' + str(where) if where else ''} (try a lower --lr or --clip-grad)", flush=True)
        return 1
    return 0


def add_commands(commands) -> None:
    d = TrainConfig()
    p = commands.add_parser("train", help="train a network; writes the run directory given by --out")
    g = p.add_argument_group("model and data")
    g.add_argument("--recipe", metavar="NAME", help="a named set of settings (fmnist93, fmnist94, fmnist95; "
                                                   "`--recipe list` describes them); explicit options win")
    g.add_argument("--model", help=f"registered name (default {d.model}; see `visionzoo models`)")
    g.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="builder keyword, repeatable")
    g.add_argument("--data", help=f"data set spec (default {d.data}): fashion-mnist, mnist, kmnist, cifar10, "
                                  "cifar100, svhn, digits, folder:PATH, fake")
    g.add_argument("--data-dir", help="data root (default $VISIONZOO_DATA or ~/.cache/visionzoo)")
    g.add_argument("--download", action="store_true", default=None, help="fetch a missing data set")
    g.add_argument("--image-size", type=int, help="resize images to this square side")
    g.add_argument("--train-limit", type=int, metavar="N", help="train on a seeded subset of N images (quick experiments)")
    g.add_argument("--val-size", type=float, help=f"validation images carved from train: count or fraction (default {d.val_size:g})")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, help=f"default {d.epochs}")
    g.add_argument("--batch-size", type=int, help=f"global batch (default {d.batch_size})")
    g.add_argument("--lr", type=float, help=f"peak learning rate (default {d.lr})")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help=f"default {d.optimizer}")
    g.add_argument("--momentum", type=float, help=f"default {d.momentum}")
    g.add_argument("--weight-decay", type=float, help=f"on weights, not biases/norms (default {d.weight_decay})")
    g.add_argument("--schedule", choices=SCHEDULES, help=f"default {d.schedule}")
    g.add_argument("--warmup-epochs", type=float, help="linear warmup length (default 0)")
    g.add_argument("--step-size", type=int, help=f"epochs between step decays (default {d.step_size})")
    g.add_argument("--gamma", type=float, help=f"step decay factor (default {d.gamma})")
    g.add_argument("--label-smoothing", type=float, help=f"ε (default {d.label_smoothing})")
    g.add_argument("--clip-grad", type=float, help="clip the global gradient norm")
    g = p.add_argument_group("augmentation")
    g.add_argument("--crop", type=int, help=f"random crop with this zero padding (default {d.crop}; 0 = off)")
    g.add_argument("--flip", action=__import__("argparse").BooleanOptionalAction, help="horizontal flips (default: on, off for digit data sets)")
    g = p.add_argument_group("speed and device")
    g.add_argument("--amp", choices=("auto", "on", "off"), help="bf16 autocast on CPU when supported, AMP on CUDA (default auto)")
    g.add_argument("--channels-last", choices=("auto", "on", "off"), help="default auto (on)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default auto: CUDA when present")
    g.add_argument("--eval-batch-size", type=int, help=f"default {d.eval_batch_size}")
    g = p.add_argument_group("run directory")
    g.add_argument("--out", help="write the run directory here")
    g.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    g.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps (default: epochs only)")
    g.add_argument("--seed", type=int, help=f"default {d.seed}")
    g.add_argument("--tensorboard", action="store_true", default=None, help="write TensorBoard events")
    g.add_argument("--diagnostics", action="store_true", default=None,
                   help="record per-layer gradient norms, activation percentiles, dead ReLUs")
    g.add_argument("--quiet", action="store_true", default=None, help="no progress bar or epoch lines")
    g = p.add_argument_group("adversarial training", "ε and α in pixels of [0, 1] (visionzoo.attacks)")
    g.add_argument("--adv", choices=ADVERSARIAL_TRAINING, help="FGSM objective J̃ (Goodfellow) or PGD min-max (Madry)")
    g.add_argument("--adv-eps", type=float, help=f"perturbation radius ε (default {d.adv_eps})")
    g.add_argument("--adv-alpha", type=float, help=f"PGD step size α (default {d.adv_alpha})")
    g.add_argument("--adv-steps", type=int, help=f"PGD steps K (default {d.adv_steps})")
    g.add_argument("--adv-weight", type=float, help=f"FGSM: weight α of the clean loss (default {d.adv_weight})")
    p.set_defaults(run=run_train)
