"""A network's layer table (Fig. 3's columns): kernel, stride, output size and parameters of every
layer.

Computed by running one input through the model with forward hooks, so the table is measured
from the network itself, not restated from the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .models import eval_mode, leaf_modules

__all__ = ["LayerRow", "layer_table"]


@dataclass
class LayerRow:
    name: str  # module name, e.g. "conv1"
    kind: str  # "conv", "relu", "pool", "norm", "fc", "dropout"
    kernel: str  # "7x7" or ""
    stride: str
    out_shape: tuple  # (C, H, W) or (units,)
    params: int


def _kind(m: nn.Module) -> str:
    return {
        nn.Conv2d: "conv",
        nn.ReLU: "relu",
        nn.MaxPool2d: "pool",
        nn.LocalResponseNorm: "norm",
        nn.Linear: "fc",
        nn.Dropout: "dropout",
    }.get(type(m), type(m).__name__.lower())


@torch.no_grad()
def layer_table(model: nn.Module, image_size: int | None = None) -> list[LayerRow]:
    """One :class:`LayerRow` per leaf module of ``model`` in forward order."""
    size = image_size or getattr(model, "input_size", 224)
    rows: list[LayerRow] = []
    hooks = []
    for name, m in leaf_modules(model):

        def hook(mod, inp, out, name=name):
            k = getattr(mod, "kernel_size", "")
            s = getattr(mod, "stride", "")
            k = (f"{k[0]}x{k[1]}" if isinstance(k, tuple) else f"{k}x{k}") if k != "" else ""
            s = (str(s[0]) if isinstance(s, tuple) else str(s)) if s != "" else ""
            rows.append(
                LayerRow(
                    name.split(".")[-1],
                    _kind(mod),
                    k,
                    s,
                    tuple(out.shape[1:]),
                    sum(p.numel() for p in mod.parameters()),
                )
            )

        hooks.append(m.register_forward_hook(hook))
    try:
        with eval_mode(model):
            model(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    return rows
