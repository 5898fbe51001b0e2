"""The 3D CNN chapter's claim (notes 003, "3D CNN": Ji, Xu, Yang, Yu, TPAMI 2013; Karpathy et al.,
CVPR 2014; Tran et al., ICCV 2015): a 2-D CNN applied to single frames cannot see motion, a 3-D
convolution over contiguous frames can ("capturing the motion information encoded in multiple
adjacent frames").

On `moving-fmnist` the label is the motion itself and every single frame is drawn from the same
distribution in every class (data/video.py), so the claim is testable in its strong form: the same
training budget for a 3-D ResNet (`r3d_small`), Karpathy's single-frame 2-D network (the middle frame)
and his early fusion (all frames stacked as the channels of a 2-D network: motion seen by the first
layer only).
"""
from __future__ import annotations

from .base import Context, Outcome, experiment, verdict
from .common import figure, save_figure, train_registered

NETWORKS = {"3-D CNN (r3d_small)": "r3d_small", "single frame (2-D)": "single_frame_cnn",
            "early fusion (2-D, frames as channels)": "early_fusion_cnn"}


def _settings(ctx: Context) -> dict:
    return dict(data="moving-fmnist", frames=ctx.pick(8, 16, 16), image_size=ctx.pick(32, None, None),
                epochs=ctx.pick(1, 2, 3), batch_size=32, lr=0.05, schedule="onecycle", label_smoothing=0.0,
                train_limit=ctx.pick(64, 2000, None), val_size=ctx.pick(32, 500, 1000),
                test_limit=ctx.pick(64, 1000, None))


@experiment("3d-vs-2d", notes="003", heading="3D CNN",
            claim="3-D convolutions over contiguous frames capture motion that a 2-D CNN on single frames cannot: "
                  "on clips whose label is the motion, the 3-D CNN learns the classes and the single-frame network "
                  "stays at chance")
def three_d_vs_two_d(ctx: Context) -> Outcome:
    settings = _settings(ctx)
    rows = []
    for label, network in NETWORKS.items():
        summary, trainer = train_registered(ctx, network, f"3d-vs-2d-{network}", **settings)
        rows.append({"network": label, "model": network, "test_top1": summary["test_top1"],
                     "params": summary["params"], "train_seconds": round(summary["train_seconds"], 1)})
        chance = 1 / len(trainer.task.classes)
    three_d, single, early = (row["test_top1"] for row in rows)
    fig, axes = figure(1, 1, width=7.0)
    axes[0, 0].barh([r["network"] for r in rows], [r["test_top1"] for r in rows])
    axes[0, 0].axvline(chance, color="grey", linestyle="--", label=f"chance ({chance:.3f})")
    axes[0, 0].set(xlabel="test top-1", xlim=(0, 1), title="moving-fmnist: the label is the motion")
    axes[0, 0].legend(fontsize=8)
    held = three_d >= 0.9 and single <= chance + 0.1
    return Outcome(
        verdict(held, conclusive=three_d >= 0.5 or ctx.budget != "smoke"),
        f"Test top-1: 3-D CNN {three_d:.4f}, single frame {single:.4f}, early fusion {early:.4f} (chance {chance:.3f}). "
        "Held when the 3-D CNN reaches 0.9 while the single-frame network stays within 0.1 of chance.",
        f"moving-fmnist, {settings}; SGD, one-cycle; the same budget and seed for each network.",
        {"networks": rows, "chance": chance}, [save_figure(fig, ctx, "3d-vs-2d.png")], rows)
