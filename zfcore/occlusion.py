"""Occlusion sensitivity (section 4.2, Fig. 7 of Zeiler & Fergus, 2014).

"We systematically occlude different portions of the input image with a grey square, and monitor
the output of the classifier." For every position of the square, :func:`occlude` records the
quantities of Fig. 7's panels:

* (b) the total activation of one layer-5 feature map: the one with the strongest response in the
  unoccluded image;
* (d) the probability of the correct class;
* (e) the most probable class (the argmax label map).

The positions are batched, and by default only the receptive-field cone of the square is
recomputed, layer by layer (:mod:`zfcore.incremental`, after Krypton, Nakandala et al. 2019); the
numbers equal a full forward pass per position to float precision (``incremental=False`` runs
exactly that, batched). :data:`PRESETS` names the exact and the fast settings; the approximations
of Krypton (cone truncation, adaptive :func:`drill_down`) stay parameters.
:func:`pixel_attribution` spreads a map over the pixels in Captum's ``Occlusion`` convention.
The pointing game and the paper's reading of Fig. 7 live in :mod:`zfcore.paper.fig7_occlusion`.

Inputs are the model's normalised tensors. The default fill ``"mean"`` is 0 in that space: the
data set's mean colour, the paper's grey.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import ZFCoreError
from .incremental import PRECISIONS, IncrementalForward, low_precision_is_fast, plan_batches
from .models import capture_layers, get_layer, in_eval_mode, layer_names, model_device, to_device
from .receptive import ReceptiveFieldError, input_problem
from .study import Result

__all__ = [
    "OcclusionError",
    "OcclusionResult",
    "occlude",
    "window_positions",
    "fill_values",
    "pixel_attribution",
    "default_window",
    "drill_down",
    "drill_steps",
    "preset_settings",
    "FILLS",
    "PRESETS",
    "OCCLUSION_VERSION",
    "low_precision_suspects",
    "LOW_PRECISION_LOGIT_ERROR",
    "LOW_PRECISION_MAX_DP",
]

#: Bump when what the occlusion analysis computes changes (part of every cache key).
OCCLUSION_VERSION = 1

#: Named fills: ``"mean"`` (0 in the normalised input: the data set's mean colour, the paper's
#: grey square) and ``"image_mean"`` (the image's own mean colour per channel).
FILLS = ("mean", "image_mean")


class OcclusionError(ZFCoreError, ValueError):
    """Bad arguments to the occlusion analysis (window, stride, fill, target, image shape)."""


def window_positions(size: int, window: int, stride: int) -> torch.Tensor:
    """Top-left coordinates of the square along one axis: ``0, stride, 2*stride, ...`` and, when
    the last step falls short of the border, one more flush with it, so every pixel is covered
    and every square lies wholly inside the image."""
    if window > size:
        raise OcclusionError(f"window {window} is larger than the image side {size}")
    pos = list(range(0, size - window + 1, stride))
    if pos[-1] != size - window:
        pos.append(size - window)
    return torch.tensor(pos, dtype=torch.long)


def fill_values(image: torch.Tensor, fill) -> torch.Tensor:
    """The occluder's colour per channel ``(C,)`` in the model's input space."""
    C = image.shape[-3]
    if isinstance(fill, str):
        if fill == "mean":
            return torch.zeros(C, dtype=image.dtype)
        if fill == "image_mean":
            return (
                image.reshape(C, -1).mean(1)
                if image.dim() == 3
                else image[0].reshape(C, -1).mean(1)
            )
        raise OcclusionError(
            f"unknown fill {fill!r}: use one of {FILLS}, a number, or one value "
            f"per channel (in the model's normalised input space)"
        )
    if isinstance(fill, numbers.Real) and not isinstance(fill, bool) and math.isfinite(fill):
        return torch.full((C,), float(fill), dtype=image.dtype)
    try:
        v = torch.as_tensor(fill, dtype=image.dtype).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        v = None
    if v is None or v.numel() != C or not torch.isfinite(v).all():
        raise OcclusionError(
            f"fill must be one of {FILLS}, a number or {C} finite values "
            f"(one per channel), not {fill!r}"
        )
    return v


@dataclass
class OcclusionResult(Result):
    """The maps of Fig. 7 for one image, one value per occluder position ``(rows, cols)``.

    ``rows``/``cols`` are the squares' top-left pixel coordinates; ``feature`` is the channel of
    ``layer`` with the strongest response in the unoccluded image; ``prob_target`` is p(target)
    and ``log_prob_target`` its logarithm (kept to break ties where p rounds to 1);
    ``top_class``/``top_prob`` the most probable class and its probability.
    ``mode``/``truncate``/``coarse``/``refine``/``tol``/``precision`` say how it was computed
    (:func:`occlude`);
    ``computed`` marks the positions computed rather than interpolated (drill-down),
    ``rechecked`` those computed again in float32 after bfloat16 (:func:`low_precision_suspects`).
    """

    window: int
    stride: int
    fill: list
    image_size: tuple
    rows: torch.Tensor
    cols: torch.Tensor
    target: int
    layer: str
    feature: int
    feature_total: torch.Tensor
    feature_total_clean: float
    prob_target: torch.Tensor
    log_prob_target: torch.Tensor
    prob_target_clean: float
    top_class: torch.Tensor
    top_prob: torch.Tensor
    clean_top_class: int
    mode: str = "exact"
    truncate: float = 1.0
    coarse: int = 1
    refine: float = 1.0
    computed: "torch.Tensor | None" = None
    tol: "float | None" = None
    precision: str = "fp32"
    rechecked: "torch.Tensor | None" = None

    @property
    def exact(self) -> bool:
        """Whether every value is exact (float32 throughout, no cone truncation, every position
        computed)."""
        return (
            self.precision == "fp32"
            and self.truncate >= 1
            and (self.computed is None or bool(self.computed.all()))
        )

    def approximation_note(self) -> str:
        """In words, how these maps depart from exact occlusion (``""`` where they do not)."""
        parts = []
        if self.precision != "fp32":
            share = 0.0 if self.rechecked is None else float(self.rechecked.double().mean())
            parts.append(
                f"each layer's change in {self.precision}, {100 * share:.0f} % of the "
                f"squares rechecked in float32"
            )
        if self.computed is not None and not bool(self.computed.all()):
            parts.append(
                f"{100 * float(self.computed.double().mean()):.0f} % of the squares "
                f"computed, the others interpolated"
            )
        if self.truncate < 1:
            parts.append(f"cones cut to {self.truncate:g} of each map")
        return "; ".join(parts)

    @property
    def centres(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Centres ``(y, x)`` of the squares in pixels, one per row / column of the maps."""
        return self.rows.double() + self.window / 2, self.cols.double() + self.window / 2

    def most_damaging(self) -> tuple[float, float]:
        """Centre ``(x, y)`` in pixels of the square that lowers p(target) the most."""
        i = int(torch.argmin(self.log_prob_target))
        r, c = divmod(i, len(self.cols))
        cy, cx = self.centres
        return float(cx[c]), float(cy[r])


def _check_image(image) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise OcclusionError(
            f"image must be a torch.Tensor (3, H, W) or (1, 3, H, W) in the "
            f"model's normalised input space, not {type(image).__name__}"
        )
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3:
        raise OcclusionError(
            f"occlude takes one image (3, H, W) or (1, 3, H, W), got shape "
            f"{tuple(image.shape)}; loop over a batch, or call "
            f"zfcore.attribute(model, images, method='occlusion')"
        )
    if not torch.isfinite(image).all():
        raise OcclusionError("image contains NaN or infinite values")
    return image.float()


def _check_int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        raise OcclusionError(f"{name} must be an integer >= {lo}, not {v!r}")
    return int(v)


#: Presets of :func:`occlude` (``mode=``). ``precision``: ``"bf16"`` convolves and multiplies
#: each layer's *change* in bfloat16 and adds it to the unoccluded activations, kept exact in
#: float32 (:meth:`zfcore.incremental.IncrementalForward.run`); the rounding error scales with the
#: change, which is small in deep layers, instead of with the activations. ``truncate`` is the
#: cone-truncation ratio (Krypton's projective-field threshold: 1 is exact), ``coarse`` the
#: drill-down step in grid positions (1: every position computed), ``refine`` the largest share of
#: the remaining positions computed where the coarse map changes, ``tol`` (``None``: off) the
#: error-driven drill-down that replaces ``refine``: from the coarse step, halved level by level,
#: compute every position whose interpolating neighbours' p(class) spread exceeds ``tol`` (or
#: whose layer-5 map total's spread exceeds ``tol`` of the map's largest value), interpolate the
#: rest (:func:`drill_down`).
#:
#: A setting is a preset only if it keeps its claim, max |dp(class)| <= 0.01 against exact
#: occlusion and the same pointing-game hits on mini's trained network;
#: ``python -m benchmarks.occlusion`` measures both, and the time saved, on every run. ``"fast"``
#: (bfloat16 changes, every position, full cones, the positions whose p(class) bfloat16 may have
#: moved rechecked in float32 by :func:`low_precision_suspects`) keeps it. Where bfloat16 is not
#: native (:func:`zfcore.incremental.low_precision_is_fast`) or ``incremental=False``, ``"fast"``
#: runs in float32 (exact). Truncation and drill-down stay parameters, not presets: no setting of
#: either keeps the claim in that benchmark (on mini's scenes p falls from about 1 to 0 within one
#: or two positions, between coarse positions that agree).
PRESETS = {
    "exact": dict(truncate=1.0, coarse=1, refine=1.0, tol=None, precision="fp32"),
    "fast": dict(truncate=1.0, coarse=1, refine=1.0, tol=None, precision="bf16"),
}


#: The bfloat16 guard of :func:`low_precision_suspects`: the assumed largest error of the logits
#: of ``precision="bf16"`` as a share of their change from the unoccluded logits (the errors and
#: the share of positions rechecked are reported by ``python -m benchmarks.occlusion``) ...
LOW_PRECISION_LOGIT_ERROR = 1 / 32
#: ... and the |dp(class)| the estimate may reach before the position is recomputed in float32.
LOW_PRECISION_MAX_DP = 0.01


def low_precision_suspects(
    logits: torch.Tensor, clean_logits: torch.Tensor, target: int
) -> torch.Tensor:
    """Positions whose p(``target``) bfloat16 may have moved by more than
    :data:`LOW_PRECISION_MAX_DP`, to be recomputed in float32.

    With logit errors of at most ``E``, p(t) = softmax(z)_t moves by at most ``2 p (1 - p) E`` to
    first order (dp_t = p_t (dz_t - sum_j p_j dz_j)), and ``E`` is estimated as
    :data:`LOW_PRECISION_LOGIT_ERROR` times the largest change of a logit from the unoccluded
    ``clean_logits`` (the rounding error scales with the change, see
    :meth:`zfcore.incremental.IncrementalForward.run`). A flat map (p near 0 or 1, or little
    change) is kept; the transitions of a trained network's map are recomputed."""
    p = torch.softmax(logits.double(), 1)[:, target]
    change = (logits - clean_logits).abs().amax(1).double()
    return 2 * p * (1 - p) * LOW_PRECISION_LOGIT_ERROR * change > LOW_PRECISION_MAX_DP


def preset_settings(
    mode: str, truncate=None, coarse=None, refine=None, tol=None, precision=None
) -> tuple[float, int, float, "float | None", str]:
    """``(truncate, coarse, refine, tol, precision)`` of preset ``mode`` (:data:`PRESETS`) with
    the settings given (not ``None``) in its place, checked; raises :class:`OcclusionError` on a
    bad mode or setting."""
    if mode not in PRESETS:
        raise OcclusionError(f"mode must be one of {sorted(PRESETS)}, not {mode!r}")
    p = PRESETS[mode]
    truncate = p["truncate"] if truncate is None else truncate
    coarse = p["coarse"] if coarse is None else coarse
    refine = p["refine"] if refine is None else refine
    tol = p.get("tol") if tol is None else tol
    precision = p["precision"] if precision is None else precision
    if (
        isinstance(truncate, bool)
        or not isinstance(truncate, numbers.Real)
        or not 0 < truncate <= 1
    ):
        raise OcclusionError(
            f"truncate must be a ratio in (0, 1] (1: exact cones), not {truncate!r}"
        )
    coarse = _check_int("coarse", coarse, 1)
    if isinstance(refine, bool) or not isinstance(refine, numbers.Real) or not 0 <= refine <= 1:
        raise OcclusionError(f"refine must be a share in [0, 1], not {refine!r}")
    if tol is not None and (
        isinstance(tol, bool)
        or not isinstance(tol, numbers.Real)
        or not math.isfinite(tol)
        or tol < 0
    ):
        raise OcclusionError(
            f"tol must be a finite number >= 0 (the largest spread of p(class) "
            f"left to interpolation; 0 computes every position) or None for the "
            f"share-based drill-down of refine, not {tol!r}"
        )
    if precision not in PRECISIONS:
        raise OcclusionError(
            f"precision must be one of {sorted(PRECISIONS)} (the dtype each "
            f"layer's change is computed in), not {precision!r}"
        )
    return float(truncate), coarse, float(refine), (None if tol is None else float(tol)), precision


@torch.inference_mode()
@in_eval_mode
def occlude(
    model: nn.Module,
    image: torch.Tensor,
    target: "int | None" = None,
    *,
    window: int = 16,
    stride: int = 4,
    fill="mean",
    layer: str = "layer5",
    feature: "int | None" = None,
    batch_size: int = 128,
    incremental: bool = True,
    progress: bool = False,
    mode: str = "exact",
    truncate: "float | None" = None,
    coarse: "int | None" = None,
    refine: "float | None" = None,
    tol: "float | None" = None,
    precision: "str | None" = None,
) -> OcclusionResult:
    """Slide a ``window`` x ``window`` square of colour ``fill`` over ``image`` in steps of
    ``stride`` pixels and record Fig. 7's maps (see :class:`OcclusionResult`).

    ``target`` is the correct class (default: the unoccluded prediction); ``layer`` the layer
    whose strongest feature map is tracked (``feature`` picks another channel). With
    ``incremental=True`` only the square's receptive-field cone is recomputed (exact, see
    :mod:`zfcore.incremental`); ``incremental=False`` runs every occluded image in full, batched.
    The model runs in eval mode (dropout would make the maps random; its mode is restored after).
    The work runs on the model's device; the maps come back on the CPU.

    ``mode="exact"`` (default) computes every position exactly. ``mode="fast"`` computes each
    layer's change in bfloat16 (``precision="bf16"``, see :data:`PRESETS`: within 0.01 of the
    exact p(class), in float32 where bfloat16 is not native). Each setting of :data:`PRESETS` can
    be overridden, including the two approximations of Krypton (Nakandala et al. 2019), which no
    preset uses: ``truncate`` (< 1: cut every layer's changed region to that share of the map's
    side, keeping the rest unoccluded) and adaptive drill-down, ``coarse`` (> 1: compute every
    ``coarse``-th position per axis first, a stride of ``coarse * stride`` pixels) with
    ``refine`` (the largest share of the other positions then computed: those where the coarse
    maps change most around them or differ most from the unoccluded values, see
    :func:`drill_down`; the others are interpolated bilinearly from the coarse ones, see
    ``OcclusionResult.computed``).
    ``tol`` (with ``coarse`` > 1) makes the drill-down error-driven instead of ``refine``'s fixed
    share, level by level from ``coarse`` (halved while even, then 1; Krypton's drill-down
    iterated): a position of the next finer level is computed where the p(class) values of the
    known positions its interpolation uses spread by more than ``tol`` (or the layer-5 map totals
    by more than ``tol`` of the map's largest absolute value), or where they include the lowest
    p(class) so far (the pointing game's point); smooth regions are interpolated. ``tol=0``
    computes every position (exact). ``precision="bf16"`` (incremental only) computes every
    layer's change in bfloat16 on top of the exact unoccluded activations; given explicitly it
    is used even where bfloat16 is slow, while the ``"fast"`` preset then falls back to float32.
    """
    image = _check_image(image)
    asked = precision
    truncate, coarse, refine, tol, precision = preset_settings(
        mode, truncate, coarse, refine, tol, precision
    )
    if not incremental and truncate < 1:
        raise OcclusionError(
            "cone truncation needs incremental=True (full passes have no cone "
            "to truncate): pass truncate=1 or incremental=True"
        )
    if not incremental and asked not in (None, "fp32"):
        raise OcclusionError(
            f"precision={asked!r} computes each layer's change, which needs "
            f"incremental=True: pass incremental=True or precision='fp32'"
        )
    try:
        problem = input_problem(
            model, "logits" if "logits" in layer_names(model) else layer, image.unsqueeze(0)
        )
    except ReceptiveFieldError:  # non-square geometry: the check does not apply, occlusion does
        problem = None
    if problem:
        raise OcclusionError(problem)
    window = _check_int("window", window, 1)
    stride = _check_int("stride", stride, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    C, H, W = image.shape
    if window > min(H, W):
        raise OcclusionError(
            f"window {window} is larger than the {H}x{W} image: choose a window "
            f"of at most {min(H, W)} pixels"
        )
    device = model_device(model)
    if (
        precision != "fp32"
        and asked is None
        and (not incremental or not low_precision_is_fast(device))
    ):
        precision = "fp32"  # the preset's bfloat16 would not save time here: run exact
    fill_v = fill_values(image, fill)
    image = image.to(device)
    probe = get_layer(model, layer)
    rows, cols = window_positions(H, window, stride), window_positions(W, window, stride)
    ny, nx = len(rows), len(cols)
    grid_r = rows.repeat_interleave(nx)  # positions are bookkeeping: on the host
    grid_c = cols.repeat(ny)

    x0 = image[None]
    logits0, act0 = _forward(model, layer, x0)
    act0 = act0[0]
    n_classes = logits0.shape[1]
    if target is None:
        target = int(logits0.argmax(1))
    if (
        isinstance(target, bool)
        or not isinstance(target, numbers.Integral)
        or not 0 <= target < n_classes
    ):
        raise OcclusionError(f"target must be a class index in [0, {n_classes}), not {target!r}")
    strength = act0.flatten(1).amax(1) if act0.dim() == 3 else act0
    if feature is None:
        feature = int(strength.argmax())
    elif not 0 <= int(feature) < strength.numel():
        raise OcclusionError(
            f"feature must be a channel of {layer} in [0, {strength.numel()}), not {feature!r}"
        )
    feature = int(feature)
    total0 = act0.flatten(1).sum(1) if act0.dim() == 3 else act0
    lp0 = torch.log_softmax(logits0, 1)[0].cpu()

    n = ny * nx
    rechecked = torch.zeros(n, dtype=torch.bool, device="cpu")
    suspect = torch.zeros(n, dtype=torch.bool, device=device)  # bfloat16 values to recheck
    maps = dict(
        logp=torch.zeros(n, device=device),
        top_p=torch.zeros(n, device=device),
        top_c=torch.zeros(n, dtype=torch.long, device=device),
        f_total=torch.zeros(n, device=device),
    )
    square = fill_v.to(device).view(C, 1, 1).expand(C, window, window)

    if incremental:
        engine = IncrementalForward(model, x0, [probe])
        batches = plan_batches(engine.geometry, rows, cols, window, batch_size, truncate=truncate)
    else:
        batches = list(torch.arange(n).split(batch_size))

    def compute(wanted: torch.Tensor, prec: str, bar) -> None:
        """Compute the positions flagged in ``wanted`` (n,) in ``prec``: the planned batches,
        filtered, with consecutive remnants merged up to ``batch_size``. Nothing is read back
        from the device: in bfloat16 the positions to recheck are only flagged (``suspect``)."""
        merged: list[torch.Tensor] = []
        for idx in batches:
            idx = idx[wanted[idx]]
            if len(idx) and merged and len(merged[-1]) + len(idx) <= batch_size:
                merged[-1] = torch.cat([merged[-1], idx])
            elif len(idx):
                merged.append(idx)
        for idx in merged:
            at = to_device(idx, device)
            r, c = grid_r[idx], grid_c[idx]
            if incremental:
                out = engine.run(square.expand(len(idx), C, window, window), r, c, truncate, prec)
                logits, totals = out.logits, out.probe_totals[probe]
                if prec != "fp32":
                    suspect[at] = low_precision_suspects(logits, logits0, target)
            else:
                logits, totals = _full_batch(model, layer, image, square, r, c)
            lp = torch.log_softmax(logits, 1)
            maps["logp"][at] = lp[:, target]
            tp, tc = lp.max(1)
            maps["top_p"][at], maps["top_c"][at] = tp.exp(), tc
            maps["f_total"][at] = totals[:, feature]
            if bar is not None:
                bar.update(len(idx))

    def evaluate(wanted: torch.Tensor, bar) -> None:
        """:func:`compute` in ``precision``; in bfloat16, then the positions whose p(class) it
        may have moved by 0.01 (:func:`low_precision_suspects`) again in float32, read back from
        the device once for all of them."""
        compute(wanted, precision, bar)
        if precision != "fp32":
            redo = suspect.cpu() & wanted
            if redo.any():
                compute(redo, "fp32", None)
                rechecked[redo] = True

    bar = _progress(n, progress, "occlusion")
    if coarse == 1 or tol == 0:
        computed = torch.ones(ny, nx, dtype=torch.bool)
        evaluate(computed.view(-1), bar)
        out = {k: v.cpu().view(ny, nx) for k, v in maps.items()}
    elif tol is None:
        ci_r, ci_c = _coarse_index(ny, coarse), _coarse_index(nx, coarse)
        computed = _grid_mask(ci_r, ci_c, (ny, nx))
        evaluate(computed.view(-1), bar)
        sub = {k: v.cpu().view(ny, nx)[ci_r[:, None], ci_c[None, :]] for k, v in maps.items()}
        more = drill_down(
            torch.stack([sub["logp"].exp(), sub["f_total"]]),
            ci_r,
            ci_c,
            (ny, nx),
            refine,
            clean=torch.tensor([float(lp0[target].exp()), float(total0[feature])]),
        )
        evaluate(more.view(-1), bar)
        computed |= more
        out = {k: v.cpu().view(ny, nx) for k, v in maps.items()}
        _fill_in(out, sub, ci_r, ci_c, computed)
    else:
        out, computed = _drill_levels(maps, evaluate, bar, (ny, nx), coarse, tol)
    bar.close()
    return OcclusionResult(
        window=window,
        stride=stride,
        fill=fill_v.tolist(),
        image_size=(H, W),
        rows=rows,
        cols=cols,
        target=int(target),
        layer=layer,
        feature=feature,
        feature_total=out["f_total"],
        feature_total_clean=float(total0[feature]),
        prob_target=out["logp"].exp(),
        log_prob_target=out["logp"],
        prob_target_clean=float(lp0[target].exp()),
        top_class=out["top_c"],
        top_prob=out["top_p"],
        clean_top_class=int(lp0.argmax()),
        mode=mode
        if (truncate, coarse, refine, tol) == preset_settings(mode)[:4] and asked is None
        else "custom",
        truncate=truncate,
        coarse=coarse,
        refine=refine,
        computed=computed,
        tol=tol,
        precision=precision,
        rechecked=rechecked.view(ny, nx) if precision != "fp32" else None,
    )


def _grid_mask(ci_r: torch.Tensor, ci_c: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``(rows, cols)`` boolean mask of the grid ``ci_r x ci_c``."""
    m = torch.zeros(shape, dtype=torch.bool)
    m[ci_r[:, None], ci_c[None, :]] = True
    return m


def drill_steps(coarse: int) -> list[int]:
    """The grid steps of the error-driven drill-down: ``coarse``, halved while even, then 1
    (8, 4, 2, 1; 6, 3, 1; 5, 1), so every level's grid contains the one before."""
    steps = [coarse]
    while steps[-1] > 1:
        steps.append(steps[-1] // 2 if steps[-1] % 2 == 0 else 1)
    return steps


def _drill_levels(maps: dict, evaluate, bar, shape: tuple[int, int], coarse: int, tol: float):
    """Error-driven drill-down (see :func:`occlude`'s ``tol``): compute the ``coarse`` grid, then
    per finer level the positions :func:`drill_down` flags (``tol``) and those next to the lowest
    p(class) so far; interpolate the others from the level before. Returns the CPU maps and the
    mask of computed positions."""
    ny, nx = shape
    out = {k: v.cpu().view(ny, nx).clone() for k, v in maps.items()}

    def run(mask):
        evaluate(mask.view(-1), bar)
        for k, v in maps.items():
            out[k][mask] = v.cpu().view(ny, nx)[mask]

    steps = drill_steps(coarse)
    ci_r, ci_c = _coarse_index(ny, steps[0]), _coarse_index(nx, steps[0])
    known = _grid_mask(ci_r, ci_c, shape)
    run(known)
    computed = known.clone()
    for step in steps[1:]:
        nr, nc = _coarse_index(ny, step), _coarse_index(nx, step)
        new = _grid_mask(nr, nc, shape) & ~known
        sub = {k: v[ci_r[:, None], ci_c[None, :]] for k, v in out.items()}
        p = sub["logp"].double().exp()
        f_scale = float(sub["f_total"].abs().max())
        lowest = torch.zeros_like(p)
        lowest.view(-1)[int(torch.argmin(sub["logp"]))] = 1.0
        more = new & (
            drill_down(
                torch.stack([p, sub["f_total"].double()]),
                ci_r,
                ci_c,
                shape,
                1.0,
                tol=tol,
                scale=torch.tensor([1.0, f_scale or 1.0]),
            )
            | drill_down(lowest, ci_r, ci_c, shape, 1.0, tol=0.0)
        )
        run(more)
        computed |= more
        _fill_in(out, sub, ci_r, ci_c, ~(new & ~more))
        known |= new
        ci_r, ci_c = nr, nc
    return out, computed


def _coarse_index(n: int, step: int) -> torch.Tensor:
    """Grid indices of the coarse pass along one axis: ``0, step, 2*step, ...`` and the last
    index (so the coarse grid spans the fine one and every fine position lies in a coarse cell)."""
    idx = list(range(0, n, step))
    if idx[-1] != n - 1:
        idx.append(n - 1)
    return torch.tensor(idx, dtype=torch.long)


def _bracket(ci: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each fine index along one axis, the coarse indices ``(k0, k1)`` (positions in ``ci``)
    its linear interpolation uses and the weight ``t`` of ``k1``; ``k0 == k1`` on the coarse
    grid (only that point is used)."""
    i = torch.arange(n)
    k0 = (torch.searchsorted(ci, i, right=True) - 1).clamp(0, len(ci) - 1)
    on = ci[k0] == i
    k1 = torch.where(on, k0, (k0 + 1).clamp(max=len(ci) - 1))
    t = torch.where(
        on,
        torch.zeros(n, dtype=torch.float64),
        (i - ci[k0]).double() / (ci[k1] - ci[k0]).clamp(min=1).double(),
    )
    return k0, k1, t


def drill_down(
    coarse_maps: torch.Tensor,
    ci_r: torch.Tensor,
    ci_c: torch.Tensor,
    shape: tuple[int, int],
    refine: float,
    clean: "torch.Tensor | None" = None,
    *,
    tol: "float | None" = None,
    scale: "torch.Tensor | None" = None,
) -> torch.Tensor:
    """Adaptive drill-down (Krypton): which positions of the fine grid ``shape`` to compute after
    a coarse pass at grid indices ``ci_r x ci_c`` gave ``coarse_maps`` (``(len(ci_r), len(ci_c))``
    or a stack ``(K, len(ci_r), len(ci_c))`` of maps, e.g. p(class) and the feature total).

    A fine position not on the coarse grid is interpolated from two or four coarse positions
    (two on a coarse row or column). Where their values agree the coarse map does not change
    there and interpolation is safe; the position's score is their spread (largest minus
    smallest), as a share of the largest spread of its map, the largest over the maps; with
    ``clean`` (the unoccluded value of each map, ``(K,)``) also their largest change from it, as
    a share of the largest change (Krypton's region of interest: where occlusion matters). Positions
    with a score above zero are refined, highest first (row-major order on ties), up to
    ``refine`` of the positions off the coarse grid. Returns a ``(rows, cols)`` boolean mask.

    With ``tol`` (error-driven, ``refine`` and ``clean`` unused) the flagged positions are exactly
    those off the coarse grid where the spread of some map, divided by its ``scale`` (``(K,)``,
    default 1: the map's own units), exceeds ``tol``.
    """
    ny, nx = shape
    v = coarse_maps.double()
    v = v[None] if v.dim() == 2 else v
    r0, r1, _ = _bracket(ci_r, ny)
    c0, c1, _ = _bracket(ci_c, nx)
    R0, R1, C0, C1 = r0[:, None], r1[:, None], c0[None, :], c1[None, :]
    corners = torch.stack([v[:, R0, C0], v[:, R0, C1], v[:, R1, C0], v[:, R1, C1]])
    on_coarse = _grid_mask(ci_r, ci_c, (ny, nx))
    if tol is not None:
        s = torch.ones(v.shape[0], dtype=torch.float64) if scale is None else scale.double()
        spread = (corners.amax(0) - corners.amin(0)) / s.view(-1, 1, 1)
        return ~on_coarse & (spread > tol).any(0)

    def share(x):  # (K, ny, nx) -> (ny, nx)
        top = x.flatten(1).amax(1).clamp(min=torch.finfo(torch.float64).tiny)
        return (x / top[:, None, None]).amax(0)

    score = share(corners.amax(0) - corners.amin(0))
    if clean is not None:
        dev = (corners - clean.double().view(1, -1, 1, 1)).abs().amax(0)
        score = torch.maximum(score, share(dev))
    candidates = (~on_coarse & (score > 0)).view(-1).nonzero().view(-1)
    budget = math.floor(refine * int((~on_coarse).sum()) + 1e-9)
    order = candidates[torch.argsort(score.view(-1)[candidates], descending=True, stable=True)]
    mask = torch.zeros(ny * nx, dtype=torch.bool)
    mask[order[:budget]] = True
    return mask.view(ny, nx)


def _fill_in(
    maps: dict, coarse_maps: dict, ci_r: torch.Tensor, ci_c: torch.Tensor, computed: torch.Tensor
) -> None:
    """Bilinear interpolation (in grid index) of the coarse maps at the positions not computed;
    the most probable class is the nearest coarse position's. ``log p`` is interpolated as ``p``."""
    ny, nx = computed.shape
    if bool(computed.all()):
        return

    kr, kr1, tr = _bracket(ci_r, ny)
    kc, kc1, tc = _bracket(ci_c, nx)
    tr, tc = tr[:, None], tc[None, :]

    def bilinear(v):
        v = v.double()
        a, b = v[kr[:, None], kc[None, :]], v[kr[:, None], kc1[None, :]]
        c, d = v[kr1[:, None], kc[None, :]], v[kr1[:, None], kc1[None, :]]
        return (1 - tr) * ((1 - tc) * a + tc * b) + tr * ((1 - tc) * c + tc * d)

    todo = ~computed
    p = bilinear(coarse_maps["logp"].exp())
    maps["logp"][todo] = p.clamp(min=1e-45).log().float()[todo]
    for k in ("f_total", "top_p"):
        maps[k][todo] = bilinear(coarse_maps[k]).float()[todo]
    near_r = torch.where(tr[:, 0] > 0.5, kr1, kr)
    near_c = torch.where(tc[0] > 0.5, kc1, kc)
    maps["top_c"][todo] = coarse_maps["top_c"][near_r[:, None], near_c[None, :]][todo]


def _forward(model, layer: str, x):
    """``(model output, activations of layer)`` from one forward pass (the model's own output,
    so models without a ``"logits"`` entry in ``layer_names`` work too)."""
    with capture_layers(model, [layer]) as store:
        logits = model(x)
    return logits, store[layer]


def _full_batch(model, layer, image, square, rows, cols):
    """Full forward passes of the occluded images at ``rows``/``cols`` (the baseline path)."""
    w = square.shape[-1]
    x = image[None].repeat(len(rows), 1, 1, 1)
    for b, (r, c) in enumerate(zip(rows.tolist(), cols.tolist())):
        x[b, :, r : r + w, c : c + w] = square
    logits, a = _forward(model, layer, x)
    return logits, (a.flatten(2).sum(2) if a.dim() == 4 else a)


def _progress(total: int, enabled: bool, desc: str):
    return tqdm(total=total, disable=not enabled, desc=desc, leave=False)


def pixel_attribution(result: OcclusionResult, which: str = "prob_target") -> torch.Tensor:
    """Per-pixel attribution ``(H, W)`` in Captum's ``Occlusion`` convention: for every pixel,
    the mean over the squares covering it of (unoccluded value - occluded value).

    ``which`` is ``"prob_target"`` or ``"feature_total"``. For a stride that divides
    ``size - window`` this equals ``captum.attr.Occlusion(...).attribute`` with the same window,
    stride, baseline and target (``benchmarks/occlusion.py`` checks it).
    """
    if which not in ("prob_target", "feature_total"):
        raise OcclusionError(f"which must be 'prob_target' or 'feature_total', not {which!r}")
    clean = result.prob_target_clean if which == "prob_target" else result.feature_total_clean
    drop = clean - getattr(result, which).double()
    H, W = result.image_size
    # Separable box sums: cover_y[h, i] = 1 where square row i covers pixel row h, so the sum of
    # the drops over the squares covering (h, w) is cover_y @ drop @ cover_x^T.
    cover_y, cover_x = (
        _coverage(size, result.rows if axis == 0 else result.cols, result.window)
        for axis, size in ((0, H), (1, W))
    )
    acc = cover_y @ drop @ cover_x.T
    count = cover_y.sum(1, keepdim=True) * cover_x.sum(1)[None]
    return (acc / count.clamp(min=1)).float()


def _coverage(size: int, starts: torch.Tensor, window: int) -> torch.Tensor:
    """``(size, len(starts))`` float64: 1 where the square starting at ``starts[i]`` covers the
    pixel."""
    p = torch.arange(size)[:, None]
    s = starts.cpu().long()[None]
    return ((p >= s) & (p < s + window)).double()


def default_window(image_size: int) -> tuple[int, int]:
    """``(window, stride)`` for an image side: a quarter of the side (28 px at the ``mini``
    profile's 112 px, 56 px at 224 px), large enough to hide a part of an object as Fig. 7's
    square does, moved in steps of a 28th of the side (4 px at 112 px)."""
    return max(2, round(image_size / 4)), max(1, round(image_size / 28))
