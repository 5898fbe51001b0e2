"""`visionzoo compress CHECKPOINT --method prune|deep|kmeans|binarize|ternary|distill|channels --out DIR`.

Writes DIR/model.vzc (readable by `visionzoo eval DIR`), DIR/compress.json and the pictures
(`visionzoo.compress.pipeline` says what each method does and what the report holds).
"""
from __future__ import annotations

import contextlib
import sys

from ..core.errors import UsageError
from ..core.io import json_text
from ..core.options import argument, at_least, positive, within
from .arguments import add_data_dir, add_device, add_json, add_overwrite, add_quiet, add_seed

# what `compress` writes into --out (compress/pipeline.py)
COMPRESS_PRODUCTS = ("model.vzc", "compress.json", "layers.png", "curves.png", "weights.png", "sensitivity.png")


def _layer_sparsity(items: list[str] | None) -> dict[str, float]:
    result = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            result[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise UsageError(f"--layer-sparsity {item!r}: give LAYER=FRACTION, e.g. fc1.0=0.92")
    return result


def _options(args):
    from ..compress.pipeline import Options
    from ..compress.retrain import RetrainSettings
    settings = RetrainSettings(epochs=args.epochs, lr=args.lr, optimizer=args.optimizer, batch_size=args.batch_size,
                               train_limit=args.train_limit, device=args.device, data_dir=args.data_dir,
                               seed=args.seed, quiet=args.quiet)
    if args.epochs < 0:
        raise UsageError(f"--epochs must be 0 or more, got {args.epochs}")
    if args.finetune_epochs < 0:
        raise UsageError(f"--finetune-epochs must be 0 or more, got {args.finetune_epochs}")
    return Options(sparsity=args.sparsity, layer_sparsity=_layer_sparsity(args.layer_sparsity),
                   iterations=args.iterations, sensitivity=args.sensitivity, conv_bits=args.conv_bits,
                   fc_bits=args.fc_bits, conv_index_bits=args.conv_index_bits, fc_index_bits=args.fc_index_bits,
                   init=args.init, finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
                   huffman=not args.no_huffman, mode=args.mode, ternary_mode=args.ternary_mode, channel_ratio=args.channel_ratio,
                   student=args.student, temperature=args.temperature, alpha=args.alpha, retrain=settings)


def _print_table(report: dict) -> None:
    print(f"{report['model']} {report['method']}: top-1 {report['top1_before']:.4f} → {report['top1_after']:.4f}, "
          f"{report['bytes_before']:,} → {report['bytes_after']:,} bytes ({report['compression_ratio']:.1f}×), "
          f"params {report['params']:,}, non-zeros {report['nonzero']:,} (sparsity {report['sparsity']:.3f}), "
          f"MACs {report['macs_before']:,} → {report['macs_after']:,} dense / {report['macs_nonzero_after']:,} on non-zeros")
    print(f"{'layer':<22}{'storage':>8}{'params':>10}{'nonzero':>10}{'sparsity':>9}{'values':>8}"
          f"{'MACs':>12}{'float32 B':>11}{'stored B':>10}{'actual r':>9}{'formula r':>10}")
    for row in report["layers"]:
        formula = f"{row['rate_formula']:.2f}" if "rate_formula" in row else "-"
        print(f"{row['layer']:<22}{row['storage']:>8}{row['params']:>10,}{row['nonzero']:>10,}{row['sparsity']:>9.3f}"
              f"{row['distinct_values']:>8,}{row['macs']:>12,}{row['bytes_float32']:>11,}{row['bytes_stored']:>10,}"
              f"{row['ratio_actual']:>9.2f}{formula:>10}")


def run_compress(args) -> int:
    from ..compress.pipeline import compress
    from ..core.rundir import claim_output
    options = _options(args)
    # with --json, stdout holds the JSON alone: the retraining's epoch lines go to stderr with its progress
    with claim_output(args.out, COMPRESS_PRODUCTS, overwrite=args.overwrite), \
            contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        report = compress(args.checkpoint, args.method, args.out, options)
    if args.json:
        # the per-layer rows, curves and codebooks are in compress.json; stdout keeps the summary
        details = {k: v for k, v in report["details"].items() if k != "codebooks"}
        print(json_text({k: v for k, v in report.items() if k not in ("layers", "retraining")} | {"details": details}))
    else:
        _print_table(report)
        print(f"wrote {args.out}/model.vzc, compress.json, {', '.join(report['plots'])}")
    return 0


def add_commands(commands) -> None:
    from ..compress.pipeline import METHODS, Options
    from ..compress.quantize import INITS
    from ..compress.retrain import RetrainSettings
    defaults, retrain = Options(), RetrainSettings()
    p = commands.add_parser("compress", help="prune, quantise, binarise, ternarise, distil or slim a trained checkpoint",
                            description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="run directory, its model.safetensors, or a .vzc file")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--out", required=True, help="directory for model.vzc, compress.json and pictures")
    add_json(p)
    add_overwrite(p)
    add_quiet(p, "retraining progress")
    g = p.add_argument_group("pruning (prune, deep)")
    g.add_argument("--sparsity", type=argument(float, within("[0, 1)")), default=defaults.sparsity, help="fraction of each layer's weights removed")
    g.add_argument("--layer-sparsity", action="append", metavar="LAYER=FRACTION",
                   help="per-layer override, repeatable (layer names as in `visionzoo info`)")
    g.add_argument("--iterations", type=argument(int, positive), default=defaults.iterations, help="prune → retrain rounds")
    g.add_argument("--sensitivity", action="store_true", help="scan accuracy vs sparsity per layer (sensitivity.png)")
    g.add_argument("--conv-index-bits", type=argument(int, positive), default=defaults.conv_index_bits, help="relative-index bits, conv")
    g.add_argument("--fc-index-bits", type=argument(int, positive), default=defaults.fc_index_bits, help="relative-index bits, fc")
    g = p.add_argument_group("weight sharing (deep, kmeans)")
    g.add_argument("--conv-bits", type=argument(int, positive), default=defaults.conv_bits, help="log2 k of conv layers")
    g.add_argument("--fc-bits", type=argument(int, positive), default=defaults.fc_bits, help="log2 k of fully connected layers")
    g.add_argument("--init", choices=INITS, default=defaults.init, help="centroid initialisation")
    g.add_argument("--finetune-epochs", type=argument(int, at_least(0)), default=defaults.finetune_epochs, help="centroid fine-tuning epochs")
    g.add_argument("--finetune-lr", type=argument(float, positive), default=defaults.finetune_lr)
    g.add_argument("--no-huffman", action="store_true", help="fixed-width codes instead of Huffman (prune, deep, kmeans)")
    g = p.add_argument_group("binarize, ternary, channels, distill")
    g.add_argument("--mode", choices=("bwn", "xnor"), default=defaults.mode, help="binarize: BWN or XNOR-Net")
    g.add_argument("--ternary-mode", choices=("twn", "ttq"), default=defaults.ternary_mode,
                   help="ternary: TWN (Δ = 0.7·E|W|, one α) or TTQ (learned W_p, W_n; retrain it with "
                        "--optimizer adam --lr 1e-3: its scale gradients are sums over a layer)")
    g.add_argument("--channel-ratio", type=argument(float, within("[0, 1)")), default=defaults.channel_ratio,
                   help="fraction of filters removed from each prunable convolution")
    g.add_argument("--student", help="zoo network to distil into (e.g. lenet5)")
    g.add_argument("--temperature", type=argument(float, positive), default=defaults.temperature)
    g.add_argument("--alpha", type=argument(float, within("[0, 1]")), default=defaults.alpha, help="weight of the soft-target loss")
    g = p.add_argument_group("retraining (the trainer's settings)")
    g.add_argument("--epochs", type=argument(int, at_least(0)), default=retrain.epochs, help="retraining epochs (per pruning round; kmeans fine-tunes for --finetune-epochs instead)")
    g.add_argument("--lr", type=argument(float, positive), default=retrain.lr)
    g.add_argument("--optimizer", default=retrain.optimizer)
    g.add_argument("--batch-size", type=argument(int, positive), default=retrain.batch_size)
    g.add_argument("--train-limit", type=argument(int, positive), help="retrain on a seeded subset of this many images")
    add_device(g)
    add_data_dir(g)
    add_seed(g, default=retrain.seed, help=f"default {retrain.seed}")
    p.set_defaults(run=run_compress)
