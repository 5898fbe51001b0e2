"""The Faster R-CNN tables of the notes (003, "R-CNN (Faster version)": Ren, He, Girshick, Sun,
NeurIPS 2015), run with the engine on `fmnist-scenes`.

1. Table 1/2, proposals: a Fast R-CNN (Girshick, ICCV 2015) on selective search's boxes (Uijlings
   et al., up to 2 000 per image: the "SS 2k" rows) against a Faster R-CNN whose RPN gives 300 per
   image ("RPN, shared, 300"): the same backbone, data, epochs and optimiser. The paper's claim:
   RPN's 300 proposals match or beat SS's 2 000 in mAP (Table 1: 59.9 vs 58.7) while the whole
   detection takes 198 ms instead of 1 830 ms (Table 2), because proposing costs a few layers on
   the shared map instead of seconds of segmentation and grouping. Measured: map50 and the median
   milliseconds per image of the proposal step (selective search; the backbone and the RPN) and
   of the whole detection, one test image at a time, the methods interleaved per image so that a
   change of the machine's load falls on all alike.
2. Table 2, sharing: "RPN+VGG, unshared" (68.5 % mAP, 342 ms) against "shared" (69.9 %, 198 ms).
   The 4-step alternating training (`--training-scheme alternating`) ends with the RPN and the
   detector on one backbone; stopped after its first two steps (`unshared`) each keeps its own.
   Both runs take the same steps per stage at a constant rate with the same seed, so the unshared
   detector is the shared run's state halfway (the paper's unshared row is the same: steps 1–2).
"""
from __future__ import annotations

import statistics
import time

import torch

from ..data.proposals import selective_search
from .base import Context, Outcome, experiment, verdict
from .common import figure, save_figure, train_registered

SMALL_RCNN = {"fast": "fast_rcnn_small", "faster": "faster_rcnn_small"}
MAP_MARGIN = 0.01            # map50 a method may lose and still "match"
PROPOSAL_SPEEDUP = 5.0       # selective search's time / the RPN's time needed (the paper's is ~10×)
SHARING_SPEEDUP = 1.1        # unshared / shared time needed: a second backbone adds its ~30 % here (VGG-16: 342 / 198)
CONSTANT_LR = 0.02           # the alternating stages' rate: lower than one-cycle's peak, which it would hold throughout


def _settings(ctx: Context) -> dict:
    """The budget's data and training, the same for every run of both experiments."""
    return dict(data="fmnist-scenes", scene_count=ctx.pick(24, 400, 2000), val_size=ctx.pick(8, 50, 200),
                test_limit=ctx.pick(8, 200, None), epochs=ctx.pick(2, 2, 4), batch_size=8, lr=0.05,
                optimizer="nesterov", weight_decay=1e-4, flip=True, keep="last")


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def interleaved_ms(steps: dict, count: int) -> dict[str, float]:
    """Median milliseconds of each of `steps` (name → callable of an image index), run on images
    0 … count − 1, every step on an image before the next image."""
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(count):
        for name, step in steps.items():
            seconds[name].append(_timed(lambda: step(index)))
    return {name: 1000 * statistics.median(values) for name, values in seconds.items()}


def _test_inputs(trainer, count: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The first `count` test images: (as stored, uint8 (C, H, W); normalised (1, C, H, W) network inputs)."""
    task = trainer.task
    images, _ = task.data.test.fetch(torch.arange(min(count, len(task.data.test))))
    raw = list(images)
    return raw, [task.normalizer(image[None].to(task.device), task.channels_last) for image in raw]


def _map_and_speed_figure(ctx: Context, rows: list[dict], title: str, name: str) -> str:
    fig, axes = figure(1, 2, width=5.5)
    labels = [row["method"] for row in rows]
    axes[0, 0].barh(labels, [row["test_map50"] for row in rows])
    axes[0, 0].set(xlabel="test map50", xlim=(0, 1), title=title)
    height = 0.4
    positions = torch.arange(len(rows), dtype=torch.float64)
    axes[0, 1].barh(positions - height / 2, [row["proposal_ms"] for row in rows], height, label="proposals")
    axes[0, 1].barh(positions + height / 2, [row["detection_ms"] for row in rows], height, label="whole detection")
    axes[0, 1].set_yticks(positions.tolist(), labels)
    axes[0, 1].set(xlabel="ms per image (median)", xscale="log", title="time per test image")
    axes[0, 1].legend(fontsize=8)
    return save_figure(fig, ctx, name)


@experiment("rpn-vs-selective-search", notes="003", heading="R-CNN (Faster version)",
            claim="a Region Proposal Network's 300 proposals give a Fast R-CNN detector the mAP of selective "
                  "search's ~2 000 (Table 1: 59.9 vs 58.7 %) and make proposing far cheaper (Table 2: 198 vs "
                  "1 830 ms for the whole detection)")
def rpn_vs_selective_search(ctx: Context) -> Outcome:
    settings = _settings(ctx)
    fast_summary, fast = train_registered(ctx, SMALL_RCNN["fast"], "rpn-vs-ss-fast", proposals="selective-search",
                                          **settings)
    faster_summary, faster = train_registered(ctx, SMALL_RCNN["faster"], "rpn-vs-ss-faster", **settings)
    raw, inputs = _test_inputs(faster, ctx.pick(4, 30, 100))
    boxes: dict[int, torch.Tensor] = {}
    features: dict[int, torch.Tensor] = {}
    rpn_counts: list[int] = []

    def search(i):
        boxes[i] = selective_search(raw[i])

    def shared_conv(i):
        features[i] = faster.model.backbone(inputs[i])

    def fast_conv(i):
        fast.model.backbone(inputs[i])

    def propose(i):   # the RPN's own layers on the shared map (the paper's Table 5 "proposal" column)
        rpn_counts.append(len(faster.model.rpn(features[i], tuple(inputs[i].shape[-2:]))[0][0]))

    fast.model.eval()
    faster.model.eval()
    with torch.no_grad():
        ms = interleaved_ms({"ss": search, "fast_conv": fast_conv,
                             "fast": lambda i: fast.model(inputs[i], proposals=[boxes[i]]),
                             "conv": shared_conv, "rpn": propose, "faster": lambda i: faster.model(inputs[i])},
                            len(inputs))
    ss_count = statistics.mean(len(b) for b in boxes.values())
    rows = [{"method": "SS + Fast R-CNN", "model": SMALL_RCNN["fast"], "proposals_per_image": round(ss_count, 1),
             "test_map50": fast_summary["test_map50"], "test_map": fast_summary["test_map"],
             "conv_ms": round(ms["fast_conv"], 2), "proposal_ms": round(ms["ss"], 2),
             "detection_ms": round(ms["ss"] + ms["fast"], 2),
             "train_seconds": round(fast_summary["train_seconds"], 1)},
            {"method": "RPN + Fast R-CNN (Faster R-CNN)", "model": SMALL_RCNN["faster"],
             "proposals_per_image": round(statistics.mean(rpn_counts), 1), "test_map50": faster_summary["test_map50"],
             "test_map": faster_summary["test_map"], "conv_ms": round(ms["conv"], 2), "proposal_ms": round(ms["rpn"], 2),
             "detection_ms": round(ms["faster"], 2), "train_seconds": round(faster_summary["train_seconds"], 1)}]
    ss, rpn = rows
    speedup = ss["proposal_ms"] / rpn["proposal_ms"]
    held = rpn["test_map50"] >= ss["test_map50"] - MAP_MARGIN and speedup >= PROPOSAL_SPEEDUP
    conclusive = ctx.budget != "smoke" or max(ss["test_map50"], rpn["test_map50"]) >= 0.5
    figures = [_map_and_speed_figure(ctx, rows, "proposals: SS vs RPN", "rpn-vs-selective-search.png")]
    return Outcome(
        verdict(held, conclusive),
        f"Test map50: RPN ({rpn['proposals_per_image']:.0f} proposals per image) {rpn['test_map50']:.4f}, selective "
        f"search ({ss['proposals_per_image']:.0f} per image) {ss['test_map50']:.4f}. Proposals: {rpn['proposal_ms']:.1f} "
        f"ms per image (the RPN's layers) vs {ss['proposal_ms']:.1f} ms ({speedup:.1f}× faster); whole detection "
        f"{rpn['detection_ms']:.1f} vs {ss['detection_ms']:.1f} ms. Held when the RPN's map50 is at least selective "
        f"search's − {MAP_MARGIN} and its proposals are ≥ {PROPOSAL_SPEEDUP:.0f}× faster (the RPN's layers on the "
        f"shared map; the backbone under them, {rpn['conv_ms']:.1f} ms, is the detector's and counts in the whole "
        "detection).",
        f"{settings}; selective search as `--proposals selective-search` (colour+size+fill+texture, k = 100, at most "
        "2 000 boxes; on these grey scenes on black it finds few regions), computed once per image before training; "
        "the RPN's 2 000 training and 300 test proposals (NMS 0.7); the same backbone (resnet9_slim to stride 8), "
        f"RoI head and seed. Times: the first {len(inputs)} test images one at a time on {ctx.device}, fp32, "
        "median.",
        {"rows": rows, "proposal_speedup": speedup}, figures, rows)


@experiment("shared-vs-unshared", notes="003", heading="R-CNN (Faster version)",
            claim="sharing the convolutional layers between the RPN and the detector (the 4-step alternating "
                  "training) keeps or improves the mAP and cuts the time per image (Table 2: 69.9 % at 198 ms "
                  "shared vs 68.5 % at 342 ms unshared)")
def shared_vs_unshared(ctx: Context) -> Outcome:
    settings = {**_settings(ctx), "schedule": "constant", "lr": CONSTANT_LR}
    runs = {}
    for scheme, epochs in (("alternating", settings["epochs"]), ("unshared", settings["epochs"] // 2)):
        runs[scheme] = train_registered(ctx, SMALL_RCNN["faster"], f"shared-vs-unshared-{scheme}",
                                        **{**settings, "epochs": epochs, "training_scheme": scheme})
    models = {scheme: trainer.model.eval() for scheme, (_, trainer) in runs.items()}
    _, inputs = _test_inputs(runs["alternating"][1], ctx.pick(4, 30, 100))
    with torch.no_grad():
        ms = interleaved_ms({f"{scheme} {part}": (lambda i, m=model, p=part: m.propose(inputs[i]) if p == "rpn"
                                                  else m(inputs[i]))
                             for scheme, model in models.items() for part in ("rpn", "whole")}, len(inputs))
    rows = []
    for scheme, (summary, trainer) in runs.items():
        rows.append({"method": "shared (4 steps)" if scheme == "alternating" else "unshared (steps 1-2)",
                     "training_scheme": scheme, "epochs": trainer.cfg.epochs,
                     "backbones": 1 if models[scheme].rpn_backbone is None else 2,
                     "test_map50": summary["test_map50"], "test_map": summary["test_map"],
                     "proposal_ms": round(ms[f"{scheme} rpn"], 2), "detection_ms": round(ms[f"{scheme} whole"], 2),
                     "train_seconds": round(summary["train_seconds"], 1)})
    shared, unshared = rows
    speedup = unshared["detection_ms"] / shared["detection_ms"]
    held = shared["test_map50"] >= unshared["test_map50"] - MAP_MARGIN and speedup >= SHARING_SPEEDUP
    conclusive = ctx.budget != "smoke" or max(shared["test_map50"], unshared["test_map50"]) >= 0.5
    figures = [_map_and_speed_figure(ctx, rows, "shared vs unshared conv layers", "shared-vs-unshared.png")]
    return Outcome(
        verdict(held, conclusive),
        f"Test map50: shared {shared['test_map50']:.4f}, unshared {unshared['test_map50']:.4f}; whole detection "
        f"{shared['detection_ms']:.1f} vs {unshared['detection_ms']:.1f} ms per image ({speedup:.2f}× faster shared). "
        f"Held when sharing loses at most {MAP_MARGIN} map50 and is ≥ {SHARING_SPEEDUP}× faster.",
        f"{settings}, faster_rcnn_small; shared: the 4 steps of the alternating training over {shared['epochs']} epochs "
        f"(RPN; detector on its proposals from a fresh backbone; RPN on the detector's frozen backbone; detector "
        f"head); unshared: the first 2 of those steps ({unshared['epochs']} epochs, the same steps per stage and "
        f"seed: the shared run halfway), the RPN then runs on its own backbone. Times: the first {len(inputs)} test "
        f"images one at a time on {ctx.device}, fp32, median, interleaved; proposals: the RPN with the backbone(s) "
        "under it.",
        {"rows": rows, "sharing_speedup": speedup}, figures, rows)
