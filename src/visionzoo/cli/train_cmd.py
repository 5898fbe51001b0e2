"""`visionzoo train`: every option of `TrainConfig`, grouped as in the notes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..tasks.adversarial import ADVERSARIAL_TRAINING
from ..core.errors import UsageError
from ..tasks.classification import TTA_MODES
from ..engine.recipes import apply_recipe, describe_recipes
from ..engine.trainer import OPTIMIZERS, SCHEDULES, TrainConfig


def _model_arg(text: str):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--model-arg {text!r}: write KEY=VALUE, e.g. shortcut=A")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _epochs(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--milestones {text!r}: give epochs separated by commas, e.g. 30,60,80") from None


def _refuse_changes_on_resume(fields: dict, resume: str) -> None:
    """--resume continues a run exactly, with the settings saved in its config.json: an option that
    would change one of them is refused rather than silently ignored."""
    saved_file = Path(resume) / "config.json"
    if not saved_file.exists():
        return      # the trainer reports the missing run
    saved = json.loads(saved_file.read_text())
    changed = [name for name, value in fields.items() if name not in ("out", "quiet") and name in saved
               and json.loads(json.dumps(value)) != saved[name]]
    if fields.get("out") and Path(fields["out"]).resolve() != Path(resume).resolve():
        changed.append("out")
    if changed:
        options = ", ".join("--" + name.replace("_", "-") for name in changed)
        raise UsageError(f"--resume {resume} continues that run with its saved settings, which {options} "
                         f"would change; drop {'it' if len(changed) == 1 else 'them'}, or start a new run")


def run_train(args) -> int:
    from ..engine.trainer import Interrupted, NonFiniteLoss, train
    d = TrainConfig()
    fields = {k: v for k, v in vars(args).items() if k in d.__dataclass_fields__ and v is not None}
    if args.model_arg:
        fields["model_args"] = dict(_model_arg(a) for a in args.model_arg)
    if args.recipe == "list":
        print(describe_recipes())
        return 0
    if args.recipe:
        fields = apply_recipe(args.recipe, fields)
    if args.resume:
        _refuse_changes_on_resume(fields, args.resume)
    try:
        train(TrainConfig(**fields), resume=args.resume)
    except Interrupted:
        print(f"interrupted: checkpoint saved in {args.out or args.resume}; continue with --resume", file=sys.stderr)
        return 130
    except NonFiniteLoss as exc:
        where = args.out or args.resume
        kept = (f"the last good checkpoint is kept in {where}" if where and (Path(where) / "checkpoint.pt").exists()
                else "no checkpoint had been saved yet")
        print(f"error: {exc}; stopped, {kept} (try a lower --lr or --clip-grad)", file=sys.stderr)
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
    g.add_argument("--data-dir", help="data root (default $VISIONZOO_DATA or ~/.cache/visionzoo; Fashion-MNIST "
                                      "also from /usr/share/datasets/fashion-mnist)")
    g.add_argument("--download", action="store_true", default=None, help="fetch a missing data set")
    g.add_argument("--image-size", type=int, help="resize images to this square side")
    g.add_argument("--train-limit", type=int, metavar="N", help="train on a seeded subset of N images (quick experiments)")
    g.add_argument("--test-limit", type=int, metavar="N", help="final test on the first N test images only (quick experiments)")
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
    g.add_argument("--gamma", type=float, help=f"decay factor of step, multistep and plateau (default {d.gamma})")
    g.add_argument("--label-smoothing", type=float, help=f"ε (default {d.label_smoothing})")
    g.add_argument("--clip-grad", type=float, help="clip the global gradient norm")
    g.add_argument("--milestones", type=_epochs, metavar="E1,E2,...", help="multistep: epochs where the rate is multiplied by γ")
    g.add_argument("--plateau-patience", type=int, metavar="N",
                   help=f"plateau: epochs without a lower val loss before the rate is multiplied by γ (default {d.plateau_patience})")
    g.add_argument("--wd-mode", choices=("l2", "decoupled"),
                   help="weight decay as L2 in the loss or decoupled (default: decoupled for adamw, else l2)")
    g.add_argument("--agc", type=float, metavar="λ", help="adaptive gradient clipping, unit-wise (NFNet; classifier excluded)")
    g.add_argument("--ema", type=float, metavar="DECAY", help="evaluate and save an exponential moving average of the weights")
    g.add_argument("--test-tta", choices=TTA_MODES,
                   help="test-time augmentation of the final test evaluation (default none; `eval --tta` likewise)")
    g.add_argument("--early-stop", type=int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better val top-1; the best weights are kept")
    g.add_argument("--keep", choices=("best", "last"),
                   help="weights tested and saved: the best validation epoch's (default) or the last epoch's "
                        "(for schedules that anneal to zero, where a small validation split's pick is noise)")
    g = p.add_argument_group("augmentation")
    g.add_argument("--crop", type=int, help=f"random crop with this zero padding (default {d.crop}; 0 = off)")
    g.add_argument("--flip", action=__import__("argparse").BooleanOptionalAction, help="horizontal flips (default: on, off for digit data sets)")
    g.add_argument("--scale-jitter", metavar="SMIN,SMAX", help="rescale each batch by S ∈ [SMIN, SMAX] ≥ 1, crop back (VGG)")
    g.add_argument("--fancy-pca", type=float, metavar="STD", help="AlexNet lighting noise along the RGB principal components (0.1)")
    g.add_argument("--random-erasing", type=float, metavar="P", help="erase a random rectangle with probability P (Zhong et al.)")
    g.add_argument("--cutout", type=int, metavar="SIZE", help="mask a SIZE×SIZE square (at the data mean)")
    g.add_argument("--mixup", type=float, metavar="α", help="mixup with λ ~ Beta(α, α), soft targets")
    g.add_argument("--cutmix", type=float, metavar="α", help="CutMix with λ ~ Beta(α, α), area-corrected")
    g = p.add_argument_group("knowledge distillation", "loss α·T²·KL(teacher‖student at T) + (1 − α)·CE")
    g.add_argument("--teacher", metavar="RUN", help="trained run directory or .safetensors (eval mode, no gradient)")
    g.add_argument("--kd-temperature", type=float, metavar="T", help=f"softmax temperature (default {d.kd_temperature})")
    g.add_argument("--kd-alpha", type=float, metavar="A", help=f"weight of the soft targets (default {d.kd_alpha})")
    g = p.add_argument_group("transfer learning")
    g.add_argument("--finetune", metavar="WEIGHTS", help="start from a visionzoo run/.safetensors or a torchvision/timm "
                                                         "state_dict of the same network; a head of another size is replaced")
    g.add_argument("--freeze-backbone", action="store_true", default=None, help="feature extraction: only the head trains")
    g.add_argument("--backbone-lr-mult", type=float, metavar="M", help="backbone learning rate = M × --lr (default 1)")
    g = p.add_argument_group("large batches", "under torchrun, --batch-size is the global batch of all workers")
    g.add_argument("--lr-scale-batch", type=int, metavar="B0", help="linear scaling rule: learning rate = --lr × batch/B0 (Goyal: 256)")
    g.add_argument("--sync-bn", action="store_true", default=None,
                   help="BN statistics over the global batch, CUDA workers only (default: per worker, as in Goyal et al.)")
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
    _add_model_options(p, d)
    p.set_defaults(run=run_train)


def _add_model_options(p, d: TrainConfig) -> None:
    """The options that change the network itself (visionzoo.train.model_options)."""
    from ..layers.activation import ACTIVATIONS
    from ..layers.norm import NORMS
    from ..layers.init import INIT_SCHEMES
    from ..engine.model_options import POOLING, PRETRAINING
    g = p.add_argument_group("initialisation", "of every Conv/Linear weight; biases 0 (visionzoo.train.init)")
    g.add_argument("--init", choices=INIT_SCHEMES,
                   help="paper (default: the network's own), zero, normal/uniform (std --init-std), "
                        "xavier_* (Var 2/(n_in+n_out)), he_fan_in/he_fan_out (Var 2/n), orthogonal, "
                        "lsuv (orthogonal, then unit output variance layer by layer on a data batch), "
                        "dirac (identity)")
    g.add_argument("--init-std", type=float, metavar="STD", help=f"σ of normal/uniform (default {d.init_std})")
    g.add_argument("--whiten", action="store_true", default=None,
                   help="set the first convolution to the whitening of the training images' patches "
                        "(± the eigenvectors of their covariance / √eigenvalue) and freeze it")
    g.add_argument("--pretrain", choices=PRETRAINING,
                   help="autoencoder: greedy layer-wise auto-encoder pre-training on the unlabelled "
                        "training images, then supervised training (chain networks: lenet, vgg*, …)")
    g.add_argument("--pretrain-epochs", type=int, metavar="N", help=f"epochs per layer (default {d.pretrain_epochs})")
    g.add_argument("--pretrain-noise", type=float, metavar="NU",
                   help="denoising auto-encoders: mask this fraction of each layer's input (default 0)")
    g = p.add_argument_group("normalisation and activations")
    g.add_argument("--norm", choices=NORMS,
                   help="replace the network's feature-map normalisation: batch, layer (GroupNorm G=1), "
                        "instance (G=C), group (G=32), none; weight/spectral reparametrise every "
                        "Conv/Linear weight instead (any network)")
    g.add_argument("--act", choices=ACTIVATIONS,
                   help="replace every activation module (prelu: per channel, prelu_shared: one slope; "
                        "maxout widens the layer before it k-fold and keeps the max)")
    g.add_argument("--maxout-k", type=int, metavar="K", help=f"maxout pieces (default {d.maxout_k})")
    g.add_argument("--pool", choices=POOLING, help="stochastic pooling in place of every max-pooling layer")
    g = p.add_argument_group("regularisation")
    g.add_argument("--dropout", type=float, metavar="P",
                   help="rate of every dropout layer (inverted dropout); networks without one get it "
                        "on the classifier's input")
    g.add_argument("--drop-connect", type=float, metavar="P", help="DropConnect on every Linear layer's weights")
    g.add_argument("--drop-block", metavar="SIZE,P",
                   help="DropBlock after the residual blocks of the last two stages, e.g. 3,0.1")
    g.add_argument("--drop-path", type=float, metavar="P",
                   help="stochastic depth: drop rate of the last residual block, linear in depth")
    g.add_argument("--max-norm", type=float, metavar="C",
                   help="after every step, clamp each unit's incoming weight norm to ≤ C")
