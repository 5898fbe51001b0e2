"""The degradation experiment's networks trained by a plain PyTorch loop beside the Trainer (issue 26, item 13).

He, Zhang, Ren, Sun, Deep Residual Learning for Image Recognition, CVPR 2016, Sec. 4.2 / Fig. 6:
CIFAR ResNets trained by SGD, lr 0.1, momentum 0.9, weight decay 1e-4, batch 128, cross-entropy.
The reference loop here is the torchvision classification reference's: `torch.optim.SGD` over all
parameters (decay on every one), `F.cross_entropy`, a `DataLoader` shuffling a `TensorDataset`,
the learning rate per step from `LambdaLR`. It trains our registered networks on the same
Fashion-MNIST subset the Trainer trains on (`load_data` with the same seed, limit and image size),
with the same cosine schedule (optional linear warm-up), and reports two training errors:

* `epoch`: the last epoch's error on its own training batches, in train mode (Fig. 6's thin curves,
  what the experiment reads);
* `eval`: the error of the final weights on the whole training subset, in eval mode.

If the Trainer and this loop agree, the experiment's result is the networks' and the budget's, not
the engine's. `--loops` picks the loops (default: both).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/degradation_reference.py [--models resnet20_cifar resnet56_cifar]
        [--limit 1500] [--epochs 3] [--batch-size 64] [--image-size 14] [--lr 0.1] [--warmup-steps 0] [--loops reference trainer]
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from visionzoo.data.datasets import load_data
from visionzoo.registry import create_model


def reference_run(model_name: str, *, limit: int, epochs: int, batch_size: int, image_size: int | None,
                  lr: float, warmup_steps: int, seed: int = 0) -> dict:
    data = load_data("fashion-mnist", seed=seed, val_size=5000, image_size=image_size, train_limit=limit)
    images, labels = data.train.fetch(torch.arange(len(data.train)))
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    inputs = (images.float() / 255 - mean) / std
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=10, in_chans=inputs.shape[1])
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    total = epochs * len(loader)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, total - warmup_steps)))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    epoch_errors = []
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        wrong = seen = 0
        for x, y in loader:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            wrong += int((logits.argmax(1) != y).sum())
            seen += len(y)
        epoch_errors.append(wrong / seen)
    model.eval()
    with torch.no_grad():
        eval_error = sum(int((model(x).argmax(1) != y).sum()) for x, y in
                         zip(inputs.split(500), labels.split(500))) / len(labels)
    return {"epoch": epoch_errors, "eval": eval_error, "seconds": time.perf_counter() - started}


def trainer_run(model_name: str, *, limit: int, epochs: int, batch_size: int, image_size: int | None,
                lr: float, warmup_steps: int, seed: int = 0) -> dict:
    """The experiment's path (experiments/depth.py through train_registered): the Trainer, fp32."""
    from visionzoo.engine.trainer import TrainConfig, Trainer
    from visionzoo.tasks.classification import evaluate
    steps = max(1, limit // batch_size)
    cfg = TrainConfig(model=model_name, data="fashion-mnist", quiet=True, seed=seed, crop=0, flip=False,
                      label_smoothing=0.0, amp="off", val_size=5000, out=None, train_limit=limit, epochs=epochs,
                      image_size=image_size, batch_size=batch_size, lr=lr, optimizer="sgd", weight_decay=1e-4,
                      schedule="cosine", warmup_epochs=warmup_steps / steps, keep="last")
    started = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.run()
    seconds = time.perf_counter() - started
    train = evaluate(trainer.model, trainer.task.data.train, trainer.task.normalizer)
    return {"epoch": [1 - h["train_top1"] for h in trainer.history], "eval": 1 - train["top1"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet20_cifar", "resnet56_cifar"])
    parser.add_argument("--limit", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--loops", nargs="+", choices=("reference", "trainer"), default=["reference", "trainer"],
                        help="the plain loop, the Trainer, or both (default)")
    args = parser.parse_args()
    settings = dict(limit=args.limit, epochs=args.epochs, batch_size=args.batch_size, image_size=args.image_size,
                    lr=args.lr, warmup_steps=args.warmup_steps)
    for name in args.models:
        for loop in args.loops:
            run = (reference_run if loop == "reference" else trainer_run)(name, **settings)
            print(f"{name:16s} {loop:9s} epoch errors {' '.join(f'{e:.3f}' for e in run['epoch'])}  "
                  f"eval error {run['eval']:.3f}  ({run['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
