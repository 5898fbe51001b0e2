"""Receptive fields computed from the architecture: Araujo, Norris, Sim. Computing Receptive Fields
of Convolutional Neural Networks. Distill 2019 (the recurrences of its Eq. 2–4); the notes, seed 004
("Receptive field") and seed 003 (VGG: "two stacked 3×3 convolutions see 5×5" — check this claim!).

For a layer with kernel k, stride s, padding p and dilation d, fed by a map whose units are j input
pixels apart, see r input pixels and have the first unit centred at `start`:

    r_out = r_in + (k − 1)·d·j_in,   j_out = j_in·s,   start_out = start_in + ((k − 1)·d/2 − p)·j_in

with r = j = 1 and start = 0.5 (the centre of pixel 0, pixel i spanning [i, i + 1]) at the input.
Unit u of a map is centred at start + u·j and sees [centre − r/2, centre + r/2] (padding included).

The network is traced in forward order with hooks on Conv2d / MaxPool2d / AvgPool2d (and adaptive
pools, read as the fixed pool they amount to); every other leaf module passes its input's field on.
A tensor made outside modules (a residual sum, an inception concatenation) gets the union of the
fields already traced at its resolution: branches and residual paths merge by taking the maximum.
Pooling written with torch.nn.functional inside a custom module is not seen by the hooks: a map
whose resolution no traced tensor has gets the deepest field so far, and it and every later row
are marked inexact (lower bounds).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.errors import UsageError
from .hooks import evaluating


@dataclass(frozen=True)
class Field:
    """Receptive field of the units of one map, per axis (height, width)."""
    size: tuple[float, float]
    jump: tuple[float, float]
    start: tuple[float, float]

    def box(self, row: int, col: int) -> tuple[float, float, float, float]:
        """(top, left, bottom, right) of unit (row, col) in input-pixel coordinates."""
        centre = [self.start[a] + u * self.jump[a] for a, u in enumerate((row, col))]
        return (centre[0] - self.size[0] / 2, centre[1] - self.size[1] / 2,
                centre[0] + self.size[0] / 2, centre[1] + self.size[1] / 2)

    def through(self, kernel, stride, padding, dilation) -> "Field":
        """The field one layer further on (the recurrences of the module docstring)."""
        size, jump, start = [], [], []
        for a in range(2):
            size.append(self.size[a] + (kernel[a] - 1) * dilation[a] * self.jump[a])
            jump.append(self.jump[a] * stride[a])
            start.append(self.start[a] + ((kernel[a] - 1) * dilation[a] / 2 - padding[a]) * self.jump[a])
        return Field(tuple(size), tuple(jump), tuple(start))

    def union(self, other: "Field") -> "Field":
        """The smallest field covering both (where branches or a residual path meet)."""
        size, start = [], []
        for a in range(2):
            low = min(self.start[a] - self.size[a] / 2, other.start[a] - other.size[a] / 2)
            high = max(self.start[a] + self.size[a] / 2, other.start[a] + other.size[a] / 2)
            size.append(high - low)
            start.append((low + high) / 2)
        return Field(tuple(size), tuple(max(self.jump[a], other.jump[a]) for a in range(2)), tuple(start))


INPUT_FIELD = Field((1.0, 1.0), (1.0, 1.0), (0.5, 0.5))


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _geometry(module: nn.Module, in_hw, out_hw):
    """(kernel, stride, padding, dilation) of a resampling layer, or None for any other module."""
    if isinstance(module, nn.Conv2d):
        kernel, dilation = _pair(module.kernel_size), _pair(module.dilation)
        if module.padding == "same":  # PyTorch puts the odd pixel of 'same' padding on the right
            padding = tuple(dilation[a] * (kernel[a] - 1) // 2 for a in range(2))
        else:
            padding = (0, 0) if module.padding == "valid" else _pair(module.padding)
        return kernel, _pair(module.stride), padding, dilation
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kernel = _pair(module.kernel_size)
        stride = _pair(module.stride or module.kernel_size)
        dilation = _pair(getattr(module, "dilation", 1))
        return kernel, stride, _pair(module.padding), dilation
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        # Output unit i pools input rows floor(i·n/m) .. ceil((i+1)·n/m): the widest window is the
        # kernel, n/m the stride (exact when m divides n, an upper bound on the size otherwise).
        kernel = tuple(max(-(-(i + 1) * n // m) - i * n // m for i in range(m)) for n, m in zip(in_hw, out_hw))
        return kernel, tuple(n / m for n, m in zip(in_hw, out_hw)), (0, 0), (1, 1)
    return None


@dataclass
class LayerField:
    name: str
    type: str
    geometry: tuple | None
    output: tuple[int, ...]
    field: Field
    exact: bool = True


def trace_receptive_fields(model: nn.Module, input_size) -> list[LayerField]:
    """Every module with a 4-D output, in forward order, with the receptive field of its units.

    Rows of resampling layers carry their geometry (kernel, stride, padding, dilation); the others
    (activations, normalisation, whole blocks) have geometry None.

    `input_size` is (C, H, W) of one image; the model runs once on zeros, in eval mode.
    """
    fields: dict[int, Field] = {}
    keep_alive: list[torch.Tensor] = []  # ids index `fields`, so the tensors must outlive the trace
    shapes: dict[int, tuple] = {}
    rows: list[LayerField] = []
    exact = [True]  # False once a resampling happened out of the hooks' sight

    def field_of(tensor: torch.Tensor) -> Field:
        if id(tensor) in fields:
            return fields[id(tensor)]
        merged = None
        for other_id, other in fields.items():
            if tuple(tensor.shape[-2:]) == shapes[other_id]:
                merged = other if merged is None else merged.union(other)
        if merged is None:
            exact[0] = False
            return max(fields.values(), key=lambda f: f.size)
        return merged

    def record(tensor, field):
        fields[id(tensor)] = field
        shapes[id(tensor)] = tuple(tensor.shape[-2:])
        keep_alive.append(tensor)

    def hook(module, args, output, name, leaf):
        if not (args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor)):
            return
        if args[0].dim() != 4 or output.dim() != 4:
            return
        if not leaf:  # a block: its output's field, already traced through its children
            rows.append(LayerField(name, type(module).__name__, None, tuple(output.shape[1:]),
                                   field_of(output), exact[0]))
            return
        incoming = field_of(args[0])
        geometry = _geometry(module, args[0].shape[-2:], output.shape[-2:])
        if geometry is None:
            if tuple(output.shape[-2:]) == tuple(args[0].shape[-2:]):
                record(output, incoming)
                rows.append(LayerField(name, type(module).__name__, None, tuple(output.shape[1:]), incoming, exact[0]))
            return
        outgoing = incoming.through(*geometry)
        record(output, outgoing)
        rows.append(LayerField(name, type(module).__name__, geometry, tuple(output.shape[1:]), outgoing, exact[0]))

    handles = []
    for name, module in model.named_modules():
        if name:
            leaf = not any(True for _ in module.children())
            handles.append(module.register_forward_hook(
                lambda mod, a, out, n=name, leaf=leaf: hook(mod, a, out, n, leaf)))
    try:
        with evaluating(model), torch.no_grad():
            x = torch.zeros((1, *input_size), device=next(model.parameters()).device)
            record(x, INPUT_FIELD)
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return rows


def field_of_layer(rows: list[LayerField], name: str) -> Field:
    for row in rows:
        if row.name == name:
            return row.field
    raise UsageError(f"layer {name!r} produces no feature map, so its units have no receptive field")


def _fmt(values) -> str:
    a, b = values
    text = lambda v: f"{v:g}" if isinstance(v, (int, float)) else str(v)
    return text(a) if a == b else f"{text(a)}×{text(b)}"


def receptive_field_table(rows: list[LayerField]) -> str:
    """The per-layer table printed by `visionzoo info NAME --receptive-field`."""
    lines = [f"{'layer':<36} {'type':<18} {'k':>5} {'s':>5} {'p':>5} {'d':>3} {'output':<16} "
             f"{'r':>7} {'j':>6} {'start':>7}"]
    for row in (r for r in rows if r.geometry is not None):
        kernel, stride, padding, dilation = row.geometry
        lines.append(f"{row.name:<36} {row.type:<18} {_fmt(kernel):>5} {_fmt(stride):>5} {_fmt(padding):>5} "
                     f"{_fmt(dilation):>3} {str(list(row.output)):<16} {_fmt(row.field.size):>7} "
                     f"{_fmt(row.field.jump):>6} {_fmt(row.field.start):>7}{'' if row.exact else ' *'}")
    if not all(row.exact for row in rows):
        lines.append("* after a resampling outside Conv2d/MaxPool2d/AvgPool2d modules (functional pooling): "
                     "lower bounds")
    return "\n".join(lines)
