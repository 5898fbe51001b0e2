"""`visionzoo bench`: img/s, latency, memory and GFLOP/s of a network (visionzoo.bench)."""
from __future__ import annotations

from ..core.io import json_text
from .arguments import add_device, add_json, add_quiet


def run_bench(args) -> int:
    from ..bench import BenchConfig, benchmark, format_report
    cfg = BenchConfig(model=args.model, input_size=tuple(args.input_size) if args.input_size else None,
                      batch_size=args.batch_size, dtype=args.dtype, channels_last=args.channels_last,
                      compile=args.compile, compare=args.compare, peak=args.peak, warmup=args.warmup,
                      repeats=args.repeats, device=args.device, num_classes=args.num_classes,
                      threads=args.threads, quiet=args.quiet)
    result = benchmark(cfg)
    print(json_text(result, indent=2) if args.json else format_report(result))
    return 0


def add_commands(commands) -> None:
    from ..bench import DTYPES, TWIN_SOURCES, BenchConfig
    d = BenchConfig(model="")
    p = commands.add_parser("bench", help="training and inference throughput, latency, memory, GFLOP/s; "
                                          "--compare against the torchvision/timm twin")
    p.add_argument("model", metavar="MODEL", help="registered name (see `visionzoo models`)")
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                   help="one image's shape (default: the model card's)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--num-classes", type=int, help="classifier width (default: the model card's)")
    p.add_argument("--dtype", choices=DTYPES, default=d.dtype, help="bf16 = autocast, as in training (default fp32)")
    p.add_argument("--channels-last", action="store_true", help="NHWC weights and inputs")
    p.add_argument("--compile", action="store_true", help="torch.compile both networks (warm-up includes compiling)")
    p.add_argument("--compare", choices=TWIN_SOURCES, help="also time the twin, interleaved, and print ours/twin")
    p.add_argument("--peak", action="store_true",
                   help="measure a large 3×3 conv as the practical peak and report GFLOP/s as a fraction of it")
    p.add_argument("--warmup", type=int, default=d.warmup, help=f"untimed steps of each kind (default {d.warmup})")
    p.add_argument("--repeats", type=int, default=d.repeats, help=f"timed steps of each kind (default {d.repeats})")
    add_device(p)
    p.add_argument("--threads", type=int, help="CPU threads (default: one per core; 1 is steadier on a shared machine)")
    add_json(p)
    add_quiet(p)
    p.set_defaults(run=run_bench)
