"""The network a run trains and its optimiser, as section 3 sets them up.

Section 3: SGD with momentum 0.9 and weight decay, batch 128, learning rate 1e-2 (annealed by
hand, :mod:`zfcore.train.loop`), dropout 0.5 in layers 6 and 7, weights initialised to 1e-2 and
biases to 0 (:func:`zfcore.models.paper_init_`). The small profiles use He or PyTorch's default
initialisation and may use Adam (``profile.optimizer``, ``profile.init``; see CONTRIBUTING.md,
"Profiles"); the paper's recipe stays one override away. On top of the paper: one optimiser group
per layer with its own learning-rate multiplier (``layer_lr``, notebook 04), a linear warm-up
and step drops of the rate (``profile.warmup_epochs``, ``profile.lr_drop_epochs``), and freezing
a layer after a given epoch (``freeze_after``).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..models import build, conv_layers, he_init_, layer_names, paper_init_
from .spec import TrainError, TrainSpec


def build_model(spec: TrainSpec) -> nn.Module:
    """The untrained network of ``spec``, initialised deterministically from ``profile.seed``."""
    p = spec.profile
    torch.manual_seed(p.seed)
    model = build(
        spec.variant,
        first_layer="zf" if spec.arch == "zfnet" else "krizhevsky",
        width=p.width,
        image_size=p.image_size,
        num_classes=p.num_classes,
        fc_units=p.fc_units,
        dropout=p.dropout,
    )
    if p.init == "paper":
        paper_init_(model)
    elif p.init == "he":  # He normal; the logits start small (profile.logits_init_std, the paper's
        he_init_(model, seed=p.seed)  # 1e-2) unless it is None
        if p.logits_init_std is not None:
            with torch.no_grad():
                logits = model.get_submodule(layer_names(model)["logits"])
                logits.weight.normal_(0.0, p.logits_init_std)
    if p.bias_init is not None:  # Krizhevsky et al. set hidden biases to 1 so ReLUs start alive
        with torch.no_grad():
            params = layer_parameters(model)
            for layer, group in params.items():
                if layer.startswith("layer") and layer != "layer1":
                    for q in group:
                        if q.dim() == 1:
                            q.fill_(p.bias_init)
    if p.layer1_init_std is not None:  # layer 1 from near zero, biases 0 (section 3's biases)
        first = conv_layers(model)[0]
        with torch.no_grad():
            first.weight.normal_(0.0, p.layer1_init_std)
            first.bias.zero_()
    return model


def layer_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The weights of each addressable layer: ``{"layer1": [conv1.weight, conv1.bias], ...}``.

    A layer's output is the ReLU named in ``model.layer_names``; its parameters are those of the
    last module with parameters before that ReLU (the convolution or fully connected layer).
    Parameters that belong to no named layer are returned under ``"other"``.
    """
    names = layer_names(model)
    order = [n for n, _ in model.named_modules()]
    owners = [
        n for n, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None
    ]
    out: dict[str, list[nn.Parameter]] = {}
    taken: set[int] = set()
    for layer, qual in names.items():
        pos = order.index(qual)
        before = [n for n in owners if order.index(n) <= pos]
        if not before:
            continue
        params = list(model.get_submodule(before[-1]).parameters(recurse=False))
        out[layer] = params
        taken.update(id(q) for q in params)
    rest = [q for q in model.parameters() if id(q) not in taken]
    if rest:
        out["other"] = rest
    return out


def parameter_groups(model: nn.Module, lr: float, layer_lr: Mapping[str, float] = ()) -> list[dict]:
    """One optimiser group per layer with ``lr * layer_lr.get(layer, 1)`` (per-layer rates)."""
    mult = dict(layer_lr)
    groups = layer_parameters(model)
    missing = sorted(set(mult) - set(groups))
    if missing:
        raise TrainError(
            f"layer_lr names {missing}, which this model does not have "
            f"(it has {sorted(k for k in groups if k != 'other')})"
        )
    return [
        {
            "params": params,
            "lr": lr * mult.get(layer, 1.0),
            "layer": layer,
            "lr_multiplier": mult.get(layer, 1.0),
        }
        for layer, params in groups.items()
    ]


def make_optimizer(spec: TrainSpec, model: nn.Module) -> torch.optim.Optimizer:
    """The profile's optimiser (SGD with momentum, Adam or AdamW, with weight decay) over
    :func:`parameter_groups` of ``model`` with the spec's per-layer rate multipliers."""
    p = spec.profile
    groups = parameter_groups(model, p.lr, dict(spec.options.layer_lr))
    if p.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    if p.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=p.lr, weight_decay=p.weight_decay)
    return torch.optim.Adam(groups, lr=p.lr, weight_decay=p.weight_decay)


def set_learning_rates(
    opt: torch.optim.Optimizer, spec: TrainSpec, scale: float, step: int, steps: int
) -> None:
    """Every group's rate: profile lr x its layer multiplier x plateau annealing x warm-up
    (linear from 0 over ``warmup_epochs``; a prefix of any longer run, like the rest)."""
    warm = spec.profile.warmup_epochs * steps
    ramp = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
    ramp *= 0.1 ** sum(step >= e * steps for e in spec.profile.lr_drop_epochs)
    for g in opt.param_groups:
        g["lr"] = spec.profile.lr * g["lr_multiplier"] * scale * ramp


def frozen_layers(spec: TrainSpec, progress: float) -> set[str]:
    """Layers whose ``freeze_after`` point (in epochs, fractions allowed) has been reached after
    ``progress`` epochs of training."""
    return {k for k, e in spec.options.freeze_after if progress >= e - 1e-9}


def apply_freeze(model: nn.Module, frozen: set[str]) -> None:
    """Stop computing gradients for the parameters of the ``frozen`` layers (and compute them
    for every other layer)."""
    for layer, params in layer_parameters(model).items():
        for q in params:
            q.requires_grad_(layer not in frozen)
