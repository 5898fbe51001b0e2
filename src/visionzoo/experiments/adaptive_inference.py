"""Adaptive inference — notes 004, "Adaptive inference": "some examples are harder than others; [a network]
should be able to use different amounts of computation for different examples". Version 1, skip some
residuals: BlockDrop (Wu et al. CVPR 2018, models/blockdrop.py); version 2, reduce resolution at
different rates: MSDNet (Huang et al. ICLR 2018, models/msdnet.py; its Fig. 5/7 curves of accuracy
against average MACs under budgeted batch classification).

Here, on Fashion-MNIST:
- MSDNet (`msdnet_fmnist`, 4 exits) trained by the Trainer with the sum of its exits' losses; each exit's
  test accuracy at its cost (anytime prediction), then early exits with thresholds set on validation
  images for the geometric exit proportions of a sweep of ratios (budgeted batch classification);
- the full ResNet: `blockdrop_resnet32_fmnist`'s backbone (a CIFAR-style ResNet) trained by the Trainer
  with every block on;
- BlockDrop: that backbone frozen, the policy trained by REINFORCE (`train_blockdrop_policy`) for a few
  penalties γ, then a short joint fine-tuning; its greedy policy's test accuracy at the mean MACs it
  executes (the policy network included).
The claim holds if an adaptive network matches the accuracy of its own full computation for fewer MACs:
MSDNet's early exits within 0.5 point of its last exit for at most 3/4 of its cost, and BlockDrop
within 1 point of the full ResNet for fewer MACs than the full ResNet.
"""
from __future__ import annotations

import copy

import torch

from ..core.profile import count_macs
from ..data.loader import eval_batches, train_batches
from ..models.blockdrop import train_blockdrop_policy
from ..models.msdnet import first_confident_exit, geometric_proportions, thresholds_for_proportions
from .base import Context, Outcome, experiment, verdict
from .common import figure, save_figure, train_registered

MSDNET_TOLERANCE, MSDNET_COST = 0.005, 0.75
BLOCKDROP_TOLERANCE = 0.01


def _exit_outputs(model, split, normalizer, limit: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(confidence, prediction) per image and exit, and the labels, of the first `limit` images of `split`."""
    split = split.take(torch.arange(min(limit, len(split))))
    confidence, predictions, labels = [], [], []
    model.eval()
    with torch.no_grad():
        for images, y in eval_batches(split, 500, device=device):
            probabilities = torch.stack(model.exit_logits(normalizer(images)), 1).float().softmax(-1)
            best = probabilities.max(-1)
            confidence.append(best.values.cpu())
            predictions.append(best.indices.cpu())
            labels.append(y.cpu())
    return torch.cat(confidence), torch.cat(predictions), torch.cat(labels)


def _blockdrop_test(model, split, normalizer, limit: int, device, input_size) -> dict:
    """Greedy-policy test accuracy, mean executed MACs (policy network included) and blocks per image."""
    split = split.take(torch.arange(min(limit, len(split))))
    correct, macs, blocks = 0, 0.0, 0.0
    model.eval()
    with torch.no_grad():
        for images, labels in eval_batches(split, 500, device=device):
            x = normalizer(images)
            policy = model.greedy_policy(x)
            correct += int((model(x, policy=policy).argmax(1) == labels).sum())
            macs += float(model.executed_macs(policy, input_size).sum())
            blocks += float(policy.float().sum())
    n = len(split)
    return {"top1": correct / n, "macs": macs / n, "blocks": blocks / n}


@experiment("adaptive-inference", notes="004", heading="Adaptive inference",
            claim="some examples are harder than others: an adaptive network (skipping residual blocks, "
                  "exiting early at a coarse scale) reaches the accuracy of its full computation with fewer MACs")
def adaptive_inference(ctx: Context) -> Outcome:
    image_size = ctx.pick(None, 14, None)
    settings = dict(train_limit=ctx.pick(64, 3000, 20000), epochs=ctx.pick(1, 4, 10), image_size=image_size,
                    batch_size=ctx.pick(32, 64, 128), lr=0.05, optimizer="sgd", weight_decay=1e-4, schedule="cosine")
    val_limit, test_limit = ctx.pick(64, 1000, 5000), ctx.pick(200, 2000, 10000)
    depth = ctx.pick(8, 20, 32)

    # MSDNet: anytime exits, then budgeted batch classification with thresholds set on validation
    summary, trainer = train_registered(ctx, "msdnet_fmnist", "msdnet", **settings)
    msdnet, normalizer, device = trainer.model, trainer.normalizer, trainer.device
    input_size = tuple(trainer.data.input_size)
    costs = torch.tensor(msdnet.exit_macs(input_size), dtype=torch.float64)
    val = _exit_outputs(msdnet, trainer.data.val, normalizer, val_limit, device)
    test_confidence, test_predictions, test_labels = _exit_outputs(msdnet, trainer.data.test, normalizer,
                                                                   test_limit, device)
    hits = test_predictions == test_labels[:, None]
    exits = [{"exit": k + 1, "macs": float(costs[k]), "test_top1": float(hits[:, k].float().mean())}
             for k in range(len(costs))]
    budgeted = []
    for ratio in torch.logspace(-1, 1, ctx.pick(5, 11, 21)).tolist():
        thresholds = thresholds_for_proportions(val[0], geometric_proportions(ratio, len(costs)))
        chosen = first_confident_exit(test_confidence, thresholds)
        budgeted.append({"ratio": ratio, "macs": float(costs[chosen].mean()),
                         "test_top1": float(hits.gather(1, chosen[:, None]).float().mean())})
    last = exits[-1]
    cheap_enough = [p for p in budgeted if p["macs"] <= MSDNET_COST * last["macs"]]
    msdnet_best = max(cheap_enough, key=lambda p: p["test_top1"], default=None)
    msdnet_saves = msdnet_best is not None and msdnet_best["test_top1"] >= last["test_top1"] - MSDNET_TOLERANCE

    # The full ResNet, then BlockDrop on it for a few penalties γ
    _, base = train_registered(ctx, "blockdrop_resnet32_fmnist", "resnet_backbone",
                               model_args={"depth": depth, "policy_side": None}, **settings)
    backbone_model = base.model
    every_block = torch.ones(1, backbone_model.num_blocks, dtype=torch.bool, device=device)
    full = {"macs": count_macs(backbone_model.backbone, input_size), "blocks": backbone_model.num_blocks}
    correct = 0
    test_split = base.data.test.take(torch.arange(min(test_limit, len(base.data.test))))
    with torch.no_grad():
        backbone_model.eval()
        for images, labels in eval_batches(test_split, 500, device=device):
            logits = backbone_model(base.normalizer(images), policy=every_block.expand(len(images), -1))
            correct += int((logits.argmax(1) == labels).sum())
    full["top1"] = correct / len(test_split)

    def batches(epoch):
        for images, labels in train_batches(base.data.train, 64, seed=ctx.seed, epoch=epoch, device=device):
            yield base.normalizer(images), labels

    policy_epochs, finetune_epochs = ctx.pick(1, 4, 10), ctx.pick(0, 1, 3)
    blockdrop = []
    for gamma in ctx.pick((1.0,), (0.5, 2.0), (0.5, 1.0, 2.0, 5.0)):
        model = copy.deepcopy(backbone_model)
        history = train_blockdrop_policy(model, batches, epochs=policy_epochs, lr=1e-3, gamma=gamma,
                                         finetune_epochs=finetune_epochs, finetune_lr=1e-3, seed=ctx.seed)
        result = _blockdrop_test(model, base.data.test, base.normalizer, test_limit, device, input_size)
        blockdrop.append({"gamma": gamma, **result, "final_reward": history[-1]["reward"]})
    blockdrop_saves = any(p["top1"] >= full["top1"] - BLOCKDROP_TOLERANCE and p["macs"] < full["macs"]
                          for p in blockdrop)

    fig, axes = figure(1, 1, width=6.5, height=4.5)
    ax = axes[0, 0]
    ax.plot([p["macs"] / 1e6 for p in budgeted], [p["test_top1"] for p in budgeted], "o-",
            label="MSDNet, early exits (thresholds on validation)")
    ax.plot([p["macs"] / 1e6 for p in exits], [p["test_top1"] for p in exits], "s--", label="MSDNet, each exit")
    ax.plot([p["macs"] / 1e6 for p in blockdrop], [p["top1"] for p in blockdrop], "^", ms=9,
            label="BlockDrop (greedy policy, γ sweep)")
    ax.plot([full["macs"] / 1e6], [full["top1"]], "k*", ms=12, label=f"full ResNet-{depth}")
    ax.set(xlabel="mean MACs per image (millions)", ylabel="test top-1",
           title=f"{trainer.data.name}, {len(trainer.data.train)} images, {settings['epochs']} epochs")
    ax.legend(fontsize=7)
    figures = [save_figure(fig, ctx, "adaptive-inference.png")]

    table = ([{"method": f"MSDNet exit {p['exit']}", "macs": p["macs"], "test_top1": p["test_top1"]} for p in exits]
             + [{"method": f"MSDNet early exit (ratio {p['ratio']:.2f})", "macs": p["macs"],
                 "test_top1": p["test_top1"]} for p in budgeted]
             + [{"method": f"full ResNet-{depth}", "macs": full["macs"], "test_top1": full["top1"],
                 "blocks": full["blocks"]}]
             + [{"method": f"BlockDrop γ={p['gamma']:g}", "macs": p["macs"], "test_top1": p["top1"],
                 "blocks": p["blocks"]} for p in blockdrop])
    msdnet_text = (f"MSDNet's last exit: {last['test_top1']:.3f} at {last['macs'] / 1e6:.2f} MMACs; best early-exit "
                   f"point within {MSDNET_COST:.0%} of that cost: "
                   + (f"{msdnet_best['test_top1']:.3f} at {msdnet_best['macs'] / 1e6:.2f} MMACs" if msdnet_best
                      else "none"))
    blockdrop_text = "; ".join(f"BlockDrop γ={p['gamma']:g}: {p['top1']:.3f} at {p['macs'] / 1e6:.2f} MMACs "
                               f"({p['blocks']:.1f}/{full['blocks']} blocks)" for p in blockdrop)
    result = (f"{msdnet_text}. Full ResNet-{depth}: {full['top1']:.3f} at {full['macs'] / 1e6:.2f} MMACs; "
              f"{blockdrop_text}. MSDNet saves: {msdnet_saves}; BlockDrop saves: {blockdrop_saves}.")
    setup = (f"{trainer.data.name}{f' at {image_size}×{image_size}' if image_size else ''}, {len(trainer.data.train)} "
             f"training images; MSDNet (4 exits) and ResNet-{depth} trained by the Trainer ({settings['epochs']} epochs, "
             f"SGD lr 0.05, cosine, batch {settings['batch_size']}; MSDNet with the sum of its exits' losses); "
             f"BlockDrop policy (ResNet-8) by REINFORCE on the frozen ResNet for {policy_epochs} epoch(s), Adam lr 1e-3, "
             f"α = 0.8, self-critical baseline, then {finetune_epochs} epoch(s) of joint fine-tuning; thresholds on "
             f"{len(val[0])} validation images, accuracy on {len(test_labels)} test images.")
    held = msdnet_saves and blockdrop_saves
    conclusive = ctx.budget != "smoke" and (held or not (msdnet_saves or blockdrop_saves))
    data = {"msdnet_exits": exits, "msdnet_budgeted": budgeted, "full_resnet": full, "blockdrop": blockdrop,
            "msdnet_test_top1": summary["test_top1"]}
    return Outcome(verdict(held, conclusive), result, setup, data, figures, table)
