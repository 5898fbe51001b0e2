"""Training diagnostics (`visionzoo train --diagnostics`): how each layer's signals evolve.

- Activation percentiles {15, 50, 85} of every Conv2d / Linear output, the inputs of the
  nonlinearities: Ioffe & Szegedy. Batch Normalization. ICML 2015, Fig. 1(b, c) ("evolution of
  input distributions to a typical sigmoid, shown as {15, 50, 85}th percentiles"; notes seed 002).
- Dead-ReLU fraction of every nn.ReLU: the share of its units (channels of a feature map,
  features of a vector) that output 0 for every image of the batch and every position.
- Gradient norm ‖∂L/∂W‖₂ of every layer's own parameters (the vanishing/exploding-gradient
  picture of Glorot & Bengio 2010, Fig. 7).

A module called several times in one forward pass (a ReLU shared by a block) records each call.
Recorded every `every` steps (about 20 points per epoch) from a forward hook that only measures
on those steps, and written to diagnostics.json + diagnostics.png in the run directory at the end
of every epoch. A resumed run keeps the records made before its checkpoint. With --tensorboard
the new points also go to the run's events, as diagnostics/grad_norm/LAYER,
diagnostics/dead_fraction/LAYER and diagnostics/p15|p50|p85/LAYER.
"""
from __future__ import annotations

import json

import torch
from torch import nn

from ..core.figures import save_figure, subplots
from ..core.io import write_json

PERCENTILES = (15, 50, 85)
_SAMPLE = 100_000  # percentiles from at most this many activations per layer and step


class TrainingDiagnostics:
    """A Trainer hook object (after_backward, on_epoch_end, on_finish)."""

    def __init__(self, trainer, points_per_epoch: int = 20):
        self.trainer = trainer
        self.every = max(1, trainer.steps_per_epoch // points_per_epoch)
        self.layers: dict[str, dict] = {}
        self.handles = []
        model = trainer.model
        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                self.handles.append(module.register_forward_hook(self._percentile_hook(name)))
            elif isinstance(module, nn.ReLU):
                self.handles.append(module.register_forward_hook(self._dead_hook(name)))
        self.owners = [(n, m) for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
        saved = trainer.out / "diagnostics.json" if trainer.out else None
        # A resumed run keeps what was recorded before its checkpoint, whose step is known only
        # once training restarts.
        self.resumed = bool(trainer.resume_from and saved and saved.exists())
        self.logged_before = 0   # points of earlier steps are in the TensorBoard events already
        if self.resumed:
            self.layers = json.loads(saved.read_text())["layers"]

    def _measuring(self, module) -> bool:
        if not module.training:
            return False
        self._trim_resumed()
        return self.trainer.global_step % self.every == 0

    def _trim_resumed(self) -> None:
        if not self.resumed:
            return
        self.resumed = False
        step = self.logged_before = self.trainer.global_step
        for entry in self.layers.values():
            for series in (v for v in entry.values() if isinstance(v, dict)):
                keep = sum(s < step for s in series["step"])
                for key in series:
                    del series[key][keep:]

    def _entry(self, name: str, module: nn.Module) -> dict:
        return self.layers.setdefault(name, {"type": type(module).__name__})

    def _series(self, name, module, key, fields):
        return self._entry(name, module).setdefault(key, {"step": [], **{f: [] for f in fields}})

    def _percentile_hook(self, name):
        def hook(module, args, output):
            if not self._measuring(module):
                return
            values = output.detach().flatten().float()
            if values.numel() > _SAMPLE:  # an evenly spaced sample keeps the cost flat
                values = values[:: values.numel() // _SAMPLE + 1]
            quantiles = torch.quantile(values, torch.tensor([p / 100 for p in PERCENTILES], device=values.device))
            series = self._series(name, module, "percentiles", [f"p{p}" for p in PERCENTILES])
            series["step"].append(self.trainer.global_step)
            for p, q in zip(PERCENTILES, quantiles.tolist()):
                series[f"p{p}"].append(q)
        return hook

    def _dead_hook(self, name):
        def hook(module, args, output):
            if not self._measuring(module):
                return
            per_unit = output.detach()
            per_unit = per_unit.transpose(0, 1).flatten(1) if per_unit.dim() > 2 else per_unit.t()
            dead = (per_unit <= 0).all(1).float().mean().item()
            series = self._series(name, module, "dead_fraction", ["value"])
            series["step"].append(self.trainer.global_step)
            series["value"].append(dead)
        return hook

    def after_backward(self, trainer) -> None:
        self._trim_resumed()
        if trainer.global_step % self.every:
            return
        # Gradients are still multiplied by the loss scale of fp16 AMP here.
        scale = trainer.scaler.get_scale() if trainer.scaler.is_enabled() else 1.0
        for name, module in self.owners:
            grads = [p.grad.detach().float() for p in module.parameters(recurse=False) if p.grad is not None]
            if grads:
                norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) / scale
                series = self._series(name, module, "grad_norm", ["value"])
                series["step"].append(trainer.global_step)
                series["value"].append(norm.item())

    def on_epoch_end(self, trainer, record) -> None:
        self.write(trainer)

    def on_finish(self, trainer, summary) -> None:
        self.write(trainer)
        for handle in self.handles:
            handle.remove()

    def write(self, trainer) -> None:
        if not (trainer.is_main and trainer.out):
            return
        if trainer.writer:
            self._write_events(trainer.writer)
            self.logged_before = trainer.global_step
        write_json(trainer.out / "diagnostics.json", {
            "every": self.every, "steps_per_epoch": trainer.steps_per_epoch,
            "percentiles": list(PERCENTILES), "layers": self.layers})
        plot_diagnostics(self.layers, trainer.out / "diagnostics.png", trainer.steps_per_epoch)

    def _write_events(self, writer) -> None:
        """The points recorded since the last write, to TensorBoard under diagnostics/…."""
        for name, entry in self.layers.items():
            for key, series in entry.items():
                if not isinstance(series, dict):
                    continue
                for field, values in series.items():
                    if field == "step":
                        continue
                    tag = f"diagnostics/{key if field == 'value' else field}/{name}"
                    for step, value in zip(series["step"], values):
                        if step >= self.logged_before:
                            writer.add_scalar(tag, value, step)


def plot_diagnostics(layers: dict, path, steps_per_epoch: int, most: int = 8) -> None:
    import matplotlib
    fig, (ax_grad, ax_pct, ax_dead) = subplots(1, 3, figsize=(17, 4.5), layout="constrained")
    colours = matplotlib.colormaps["viridis"]
    for key, ax in (("grad_norm", ax_grad), ("dead_fraction", ax_dead)):
        named = [(n, e[key]) for n, e in layers.items() if key in e]
        for i, (name, series) in enumerate(named):
            ax.plot([s / steps_per_epoch for s in series["step"]], series["value"], label=name,
                    color=colours(i / max(1, len(named) - 1)))
        if len(named) <= 12:
            ax.legend(fontsize=6)
        elif named:   # too many layers to name each: the colour runs from the first layer to the last
            mappable = matplotlib.cm.ScalarMappable(cmap=colours, norm=matplotlib.colors.Normalize(1, len(named)))
            fig.colorbar(mappable, ax=ax, label=f"layer (1 = {named[0][0]}, {len(named)} = {named[-1][0]})",
                         fraction=0.05, pad=0.02)
    # Fig. 1 of Ioffe & Szegedy: the median with the 15–85 band, for a few layers spread over depth.
    named = [(n, e["percentiles"]) for n, e in layers.items() if "percentiles" in e]
    chosen = named if len(named) <= most else [named[round(i * (len(named) - 1) / (most - 1))] for i in range(most)]
    for i, (name, series) in enumerate(chosen):
        epochs = [s / steps_per_epoch for s in series["step"]]
        colour = colours(i / max(1, len(chosen) - 1))
        ax_pct.plot(epochs, series["p50"], color=colour, label=name)
        ax_pct.fill_between(epochs, series["p15"], series["p85"], color=colour, alpha=0.15)
    if chosen:
        ax_pct.legend(fontsize=6)
    ax_grad.set(xlabel="epoch", ylabel="‖∂L/∂W‖₂ per layer", title="gradient norms", yscale="log")
    ax_pct.set(xlabel="epoch", ylabel="activation", title="Conv/Linear outputs: 15th, 50th, 85th percentiles")
    ax_dead.set(xlabel="epoch", ylabel="fraction of units", title="dead ReLU units (0 on the whole batch)",
                ylim=(-0.02, 1.02))
    for ax in (ax_grad, ax_pct, ax_dead):
        ax.grid(alpha=0.3)
    save_figure(fig, path)
