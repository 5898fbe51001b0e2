"""Throughput, latency, memory and achieved FLOP/s of a network, alone or beside its twin.

The method is that of timm's `benchmark.py` (R. Wightman, pytorch-image-models): warm-up steps,
then repeated timed steps, reported as the median with its spread (inter-quartile range,
min/max). A training step is forward + cross-entropy + backward + SGD step; its FLOPs are taken
as 3× those of the forward pass (the backward computes two products of the forward's size: the
gradient of the input and that of the weights — the estimate of Kaplan et al., "Scaling Laws for
Neural Language Models", 2020, §2.1). One MAC is two FLOPs (`visionzoo.profile.count_macs`).
Achieved GFLOP/s over the measured rate of a large 3×3 convolution on the same machine is the
compute efficiency of the roofline model (Williams, Waterman & Patterson, "Roofline", CACM 2009):
that convolution stands for the practical peak.

`compare` builds the torchvision or timm twin with the same settings in the same process and
interleaves its timings with ours (alternating which goes first) so that drift of a shared,
noisy machine falls on both. Our network is built with `image_size` = the input side, so below
64 px it takes its small-input form; compare at 64 px or more, where both are the same network
(the MAC counts of both are reported so that a mismatch shows).
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import registry
from .core.errors import UsageError
from .core.profile import count_macs, count_params
from .core.progress import note, progress

DTYPES = ("fp32", "bf16")
TWIN_SOURCES = ("torchvision", "timm")
# The practical-peak probe: a ResNet conv3_x-sized 3×3 convolution, 256 → 256 channels at 56×56.
PEAK_CONV_CHANNELS, PEAK_CONV_SIDE = 256, 56


@dataclass
class BenchConfig:
    model: str
    input_size: tuple[int, int, int] | None = None  # default: the model card's
    batch_size: int = 32
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compare: str | None = None
    peak: bool = False
    warmup: int = 3
    repeats: int = 10
    device: str = "auto"
    num_classes: int | None = None
    peak_seconds: float = 1.0  # how long one timed run of the peak convolution should last
    threads: int | None = None  # CPU threads for this benchmark (default: torch's, one per core)
    quiet: bool = True  # no progress on stderr (`visionzoo bench` shows it unless --quiet)

    def validate(self) -> None:
        registry.get_entry(self.model)
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        if self.compare is not None and self.compare not in TWIN_SOURCES:
            raise UsageError(f"--compare {self.compare!r}: choose one of {', '.join(TWIN_SOURCES)}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {self.threads}")
        for key in ("batch_size", "repeats"):
            if getattr(self, key) < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be at least 1, got {getattr(self, key)}")
        if self.warmup < 0:
            raise UsageError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.input_size is not None and (len(self.input_size) != 3 or min(self.input_size) < 1):
            raise UsageError(f"--input-size {self.input_size}: give three positive numbers C H W")


# ---- building the networks -------------------------------------------------------------------
def build_ours(name: str, input_size, num_classes: int) -> nn.Module:
    channels, _, side = input_size
    return registry.create_model(name, num_classes=num_classes, in_chans=channels, image_size=side)


def build_twin(name: str, source: str, input_size, num_classes: int) -> tuple[nn.Module, str]:
    """The torchvision or timm network the registry records as `name`'s twin, for this input."""
    entry = registry.get_entry(name)
    if source not in entry.twins:
        have = ", ".join(entry.twins) or "none"
        raise UsageError(f"--compare {source}: {name} has no {source} twin (its twins: {have})")
    twin_name = entry.twins[source]
    channels, _, side = input_size
    if source == "torchvision":
        import torchvision
        if channels != 3:
            raise UsageError("--compare torchvision: torchvision networks take 3 channels; use --input-size 3 H W")
        make, size_kwarg, fixed = getattr(torchvision.models, twin_name), "image_size", {}
    else:
        import timm
        make, size_kwarg, fixed = (lambda **kw: timm.create_model(twin_name, **kw)), "img_size", {"in_chans": channels}
    try:  # transformers are built for one input size; convolutional networks take no size argument
        return make(num_classes=num_classes, **fixed, **{size_kwarg: side}), twin_name
    except TypeError as exc:
        if size_kwarg not in str(exc):   # a failure of its own, not the size argument it lacks
            raise
        return make(num_classes=num_classes, **fixed), twin_name


# ---- one network ready to time ---------------------------------------------------------------
def _output_logits(output) -> list[torch.Tensor]:
    """Main logits first, then any auxiliary heads (ours: (logits, [aux]); torchvision: namedtuples)."""
    if isinstance(output, torch.Tensor):
        return [output]
    return [t for part in output if part is not None for t in _output_logits(part)]


class Runner:
    """A network, its optimiser and one fixed batch; `train_step` and `infer_step` run one batch."""

    def __init__(self, label: str, model: nn.Module, cfg: BenchConfig, input_size, num_classes: int,
                 device: torch.device):
        self.label, self.device, self.autocast_bf16 = label, device, cfg.dtype == "bf16"
        self.module = model.to(device)
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.module = self.module.to(memory_format=memory_format)
        self.params = count_params(self.module)
        self.macs = count_macs(self.module, input_size)
        self.net = torch.compile(self.module) if cfg.compile else self.module
        self.optimizer = torch.optim.SGD(self.module.parameters(), lr=1e-4, momentum=0.9, foreach=True)
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn((cfg.batch_size, *input_size), generator=generator).to(device)
        self.x = self.x.contiguous(memory_format=memory_format)
        self.labels = torch.randint(num_classes, (cfg.batch_size,), generator=generator).to(device)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16)

    def train_step(self) -> None:
        self.net.train()
        with self._autocast():
            output = self.net(self.x)
        if hasattr(self.module, "training_loss"):  # e.g. CapsNet's margin + reconstruction loss
            loss = self.module.training_loss(output, self.labels, 0.0)[0]
        else:  # auxiliary heads weighted 0.3 as in GoogLeNet / Inception
            logits, *aux = _output_logits(output)
            loss = F.cross_entropy(logits.float(), self.labels)
            for aux_logits in aux:
                loss = loss + 0.3 * F.cross_entropy(aux_logits.float(), self.labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def infer_step(self) -> None:
        self.net.eval()
        with torch.no_grad(), self._autocast():
            self.net(self.x)

    def step(self, kind: str) -> None:
        (self.train_step if kind == "train" else self.infer_step)()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:
    return _timed_wall_and_cpu(fn, device)[0]


def _timed_wall_and_cpu(fn, device: torch.device) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds: on a shared CPU the wall time also counts
    the waits for a core, the CPU time does not."""
    _synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    fn()
    _synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def spread(seconds: list[float]) -> dict:
    """Median, quartiles and extremes of per-batch latencies, in milliseconds."""
    ms = sorted(s * 1e3 for s in seconds)
    quartiles = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else [ms[0]] * 3
    return {"median": statistics.median(ms),
            "q1": quartiles[0], "q3": quartiles[2], "iqr": quartiles[2] - quartiles[0],
            "min": ms[0], "max": ms[-1], "n": len(ms)}


# ---- memory ----------------------------------------------------------------------------------
def _proc_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_high_water() -> bool:
    # Linux ≥ 4.0: writing 5 to clear_refs resets VmHWM to the current RSS.
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _release_free_heap() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed blocks back to the OS: an honest baseline


def step_memory_mib(runner: Runner, kind: str) -> tuple[float | None, str]:
    """Memory one step needs beyond what is live before it (model, optimiser state, batch).

    CUDA: growth of `max_memory_allocated`. CPU: growth of the resident set's high-water mark
    (VmHWM, reset before the step), after returning freed heap to the OS.
    """
    device = runner.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        runner.step(kind)
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20, "cuda_max_allocated"
    _release_free_heap()
    before = _proc_status_kib("VmRSS")
    if before is None or not _reset_rss_high_water():
        return None, "unavailable"
    runner.step(kind)
    return max(0, _proc_status_kib("VmHWM") - before) / 1024, "rss_high_water"


# ---- the practical peak ----------------------------------------------------------------------
def conv_peak(cfg: BenchConfig, device: torch.device) -> dict:
    """GFLOP/s of a 3×3, 256→256 convolution at 56×56 in the chosen dtype and memory format.

    The batch is chosen so one timed run lasts about `peak_seconds`; median over the repeats.
    """
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    conv = nn.Conv2d(PEAK_CONV_CHANNELS, PEAK_CONV_CHANNELS, 3, padding=1, bias=False).to(device)
    conv = conv.to(memory_format=memory_format).eval()
    flops_per_image = 2 * PEAK_CONV_CHANNELS * PEAK_CONV_CHANNELS * 9 * PEAK_CONV_SIDE ** 2

    def run(batch: int):
        x = torch.randn(batch, PEAK_CONV_CHANNELS, PEAK_CONV_SIDE, PEAK_CONV_SIDE, device=device)
        x = x.contiguous(memory_format=memory_format)

        def forward():
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bf16"):
                conv(x)
        return forward

    one = run(1)
    one()
    batch = max(1, min(256, round(cfg.peak_seconds / _timed(one, device))))
    forward = run(batch)
    for _ in range(max(1, cfg.warmup)):
        forward()
    wall, cpu = zip(*(_timed_wall_and_cpu(forward, device) for _ in range(max(3, min(cfg.repeats, 5)))))
    return {"peak_gflop_s": flops_per_image * batch / statistics.median(wall) / 1e9,
            "peak_gflop_cpu_s": flops_per_image * batch / statistics.median(cpu) / 1e9,
            "peak_conv": {"channels": PEAK_CONV_CHANNELS, "side": PEAK_CONV_SIDE, "kernel": 3,
                          "batch": batch, "ms": spread(wall), "cpu_ms": spread(cpu)}}


# ---- the benchmark ---------------------------------------------------------------------------
def _prefixed(prefix: str, runner: Runner, cfg: BenchConfig, times: dict, memory: dict) -> dict:
    flop_per_image = 2 * runner.macs
    out = {"params": runner.params, "macs": runner.macs}
    for kind, flop_factor in (("train", 3), ("infer", 1)):
        latency = spread(times[kind])
        img_s = cfg.batch_size / (latency["median"] / 1e3)
        cpu = spread(times[kind + "_cpu"])
        out.update({f"{kind}_img_s": img_s, f"{kind}_ms": latency, f"{kind}_cpu_ms": cpu,
                    f"{kind}_gflop_s": flop_factor * flop_per_image * img_s / 1e9,
                    # per second of process CPU time (all threads): the rate a quiet machine would show
                    f"{kind}_gflop_cpu_s": flop_factor * flop_per_image * cfg.batch_size / (cpu["median"] / 1e3) / 1e9,
                    f"{kind}_peak_mem_mib": memory[kind]})
    return {prefix + key: value for key, value in out.items()}


def _first_steps(runner: Runner, input_size, warmup: int) -> None:
    """Warm-up; the first call tells a network that cannot take this input in one clear line."""
    try:
        runner.step("train")
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{runner.label} cannot run on input {'×'.join(map(str, input_size))}: {first_line}; "
                         "try another --input-size") from None
    for _ in range(max(0, warmup - 1)):
        runner.step("train")
    for _ in range(warmup):
        runner.step("infer")


def benchmark(cfg: BenchConfig) -> dict:
    """Run the benchmark described by `cfg`; returns the flat dict that `bench --json` prints."""
    cfg.validate()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _benchmark(cfg)
    finally:
        torch.set_num_threads(threads)


def _benchmark(cfg: BenchConfig) -> dict:
    from .core.runtime import resolve_device
    entry = registry.get_entry(cfg.model)
    if entry.task != "classification":   # the timed step is a classifier's: images in, cross-entropy on classes
        raise UsageError(f"bench times a classifier's training and inference steps; {cfg.model} is a {entry.task} "
                         "network: its task's speed rows against the reference implementation are in BENCHMARKS.md "
                         "(scripts in benchmarks/)")
    input_size = tuple(cfg.input_size or entry.input_size)
    num_classes = cfg.num_classes or entry.num_classes
    device = resolve_device(cfg.device)
    torch.manual_seed(0)
    runners = [Runner(cfg.model, build_ours(cfg.model, input_size, num_classes), cfg, input_size,
                      num_classes, device)]
    twin_name = None
    if cfg.compare:
        twin, twin_name = build_twin(cfg.model, cfg.compare, input_size, num_classes)
        runners.append(Runner(f"{cfg.compare} {twin_name}", twin, cfg, input_size, num_classes, device))
    for runner in runners:
        note(f"{runner.label}: warm-up ({cfg.warmup} steps of each kind) and memory", quiet=cfg.quiet)
        _first_steps(runner, input_size, cfg.warmup)
    memory = {id(r): {kind: None for kind in ("train", "infer")} for r in runners}
    memory_kind = "unavailable"
    for runner in runners:
        for kind in ("train", "infer"):
            memory[id(runner)][kind], memory_kind = step_memory_mib(runner, kind)
    times = {id(r): {kind: [] for kind in ("train", "infer", "train_cpu", "infer_cpu")} for r in runners}
    for repeat in progress(range(cfg.repeats), desc="timing", unit="repeats", quiet=cfg.quiet):
        order = runners if repeat % 2 == 0 else runners[::-1]  # who goes first alternates
        for kind in ("train", "infer"):
            for runner in order:
                wall, cpu = _timed_wall_and_cpu(lambda: runner.step(kind), device)
                times[id(runner)][kind].append(wall)
                times[id(runner)][kind + "_cpu"].append(cpu)
    ours = runners[0]
    result = {"model": cfg.model, "input_size": list(input_size), "batch_size": cfg.batch_size,
              "dtype": cfg.dtype, "channels_last": cfg.channels_last, "compile": cfg.compile,
              "device": str(device), "threads": torch.get_num_threads(), "warmup": cfg.warmup,
              "repeats": cfg.repeats, "num_classes": num_classes, "memory_measure": memory_kind,
              **_prefixed("", ours, cfg, times[id(ours)], memory[id(ours)])}
    if cfg.compare:
        twin_runner = runners[1]
        result.update({"twin": twin_name, "twin_source": cfg.compare,
                       **_prefixed("twin_", twin_runner, cfg, times[id(twin_runner)], memory[id(twin_runner)])})
        for kind in ("train", "infer"):
            result[f"{kind}_ratio"] = result[f"{kind}_img_s"] / result[f"twin_{kind}_img_s"]
            # img/s by CPU time: steadier than wall time when other processes share the cores
            result[f"{kind}_cpu_ratio"] = result[f"twin_{kind}_cpu_ms"]["median"] / result[f"{kind}_cpu_ms"]["median"]
        result["same_work"] = result["macs"] == result["twin_macs"]
    if cfg.peak:
        result.update(conv_peak(cfg, device))
        for kind in ("train", "infer"):
            result[f"{kind}_peak_fraction"] = result[f"{kind}_gflop_s"] / result["peak_gflop_s"]
            result[f"{kind}_peak_fraction_cpu"] = result[f"{kind}_gflop_cpu_s"] / result["peak_gflop_cpu_s"]
            if cfg.compare:
                result[f"twin_{kind}_peak_fraction"] = result[f"twin_{kind}_gflop_s"] / result["peak_gflop_s"]
    return result


def _row(label: str, result: dict, prefix: str) -> str:
    cells = [f"{label:<34}"]
    for kind in ("train", "infer"):
        ms = result[f"{prefix}{kind}_ms"]
        cells.append(f"{result[prefix + kind + '_img_s']:>9.1f} {ms['median']:>8.1f} "
                     f"[{ms['q1']:.1f}–{ms['q3']:.1f}] {result[prefix + kind + '_gflop_s']:>7.1f}")
    mem = [result[f"{prefix}{kind}_peak_mem_mib"] for kind in ("train", "infer")]
    cells.append("/".join("-" if m is None else f"{m:.0f}" for m in mem))
    return "  ".join(cells)


def format_report(result: dict) -> str:
    """The human-readable table of `visionzoo bench`."""
    size = "×".join(map(str, result["input_size"]))
    head = (f"{result['model']}: input {size}, batch {result['batch_size']}, {result['dtype']}"
            f"{', channels_last' if result['channels_last'] else ''}{', compiled' if result['compile'] else ''}, "
            f"{result['device']} ({result['threads']} threads), {result['warmup']} warm-up + "
            f"{result['repeats']} timed steps each; {result['macs'] / 1e6:.1f} M MACs/image")
    columns = (f"{'':<34}  {'train img/s':>9} {'ms/batch':>8} [IQR] {'GFLOP/s':>7}  "
               f"{'infer img/s':>9} {'ms/batch':>8} [IQR] {'GFLOP/s':>7}  step MiB train/infer")
    lines = [head, columns, _row("ours (visionzoo)", result, "")]
    if "twin" in result:
        lines.append(_row(f"twin ({result['twin_source']} {result['twin']})", result, "twin_"))
        lines.append(f"{'ratio ours/twin':<34}  train {result['train_ratio']:.3f}   infer {result['infer_ratio']:.3f}"
                     f"   (by CPU time: train {result['train_cpu_ratio']:.3f}, infer {result['infer_cpu_ratio']:.3f})"
                     + ("" if result["same_work"] else
                        f"   (different work: {result['macs']} vs {result['twin_macs']} MACs/image)"))
    if "peak_gflop_s" in result:
        conv = result["peak_conv"]
        lines.append(f"peak: 3×3 conv {conv['channels']}→{conv['channels']} at {conv['side']}² batch "
                     f"{conv['batch']}: {result['peak_gflop_s']:.1f} GFLOP/s; training reaches "
                     f"{100 * result['train_peak_fraction']:.1f} %, inference {100 * result['infer_peak_fraction']:.1f} % "
                     f"(by CPU time: peak {result['peak_gflop_cpu_s']:.1f} GFLOP/s, training "
                     f"{100 * result['train_peak_fraction_cpu']:.1f} %, inference {100 * result['infer_peak_fraction_cpu']:.1f} %)")
    if result["memory_measure"] == "rss_high_water":
        lines.append("step MiB: growth of the resident set's high-water mark during one step")
    return "\n".join(lines)
