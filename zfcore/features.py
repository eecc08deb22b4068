"""Streaming multi-layer feature extraction: every layer a probe needs, in one pass over the data.

Section 5 of Zeiler & Fergus (2014) keeps layers 1-7 of the ImageNet network fixed and trains new
classifiers on their outputs: a softmax on layer 7 for Tables 4-6 and Fig. 9, a linear SVM or a
softmax on each of layers 1-7 for Table 7. Training such classifiers never changes the features,
so they are computed once and reused for every draw of the training images, every ``n`` per
class and every classifier: the precomputed-feature path that lets a softmax train in seconds.

* :func:`layer_outputs` runs one forward pass with forward hooks on the requested layers
  (``model.layer_names``, see :mod:`zfcore.models`) and stops the pass as soon as the last of them
  has been computed: asking for layer 5 alone never runs layers 6 and 7.
* :func:`extract_features` streams a data set through :func:`layer_outputs` once for all requested
  layers, pools convolutional maps to a fixed ``pooled_side`` x ``pooled_side`` grid ("pooled to a
  fixed size where needed": a layer-1 map of 48x54x54 would otherwise give 140,000 dimensions) and
  writes each batch into preallocated ``(N, D)`` tensors, so peak memory is the result plus one
  batch of activations.
* :func:`cached_features` caches the result under ``<cache_dir>/features/<hash>/`` by a hash of
  the model's weights, the data's identity and the extraction settings
  (:func:`zfcore.cache.cached`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .cache import cached
from .errors import ZFCoreError
from .models import (
    LayerError,
    eval_mode,
    forward_layers,
    layer_keys,
    model_device,
    model_fingerprint,
)
from .receptive import ReceptiveFieldError, input_problem

__all__ = [
    "LAYERS",
    "POOL_MODES",
    "FEATURES_VERSION",
    "Features",
    "FeatureError",
    "layer_outputs",
    "pool_map",
    "pool_map_shape",
    "extract_features",
    "cached_features",
    "FeatureTypeError",
]

#: The layers of Table 7 (the rectified outputs of layers 1-7, Fig. 3).
LAYERS: tuple[str, ...] = tuple(f"layer{i}" for i in range(1, 8))
POOL_MODES = ("avg", "max")
#: Bump when extraction changes what it stores (part of every cache key).
FEATURES_VERSION = 1


class FeatureError(ZFCoreError, ValueError):
    """Bad arguments to feature extraction (unknown layer, pooling mode, empty data)."""


class FeatureTypeError(FeatureError, TypeError):
    """Data of a kind feature extraction cannot stream (not a Dataset, a DataLoader or an
    ``(images, labels)`` pair of tensors)."""


@dataclass
class Features:
    """Per-layer feature matrices of one data set, row ``i`` from item ``i``.

    ``layers`` maps ``"layer1"`` ... to ``(N, D_layer)`` float tensors; ``labels`` is ``(N,)``
    (class indices) or ``(N, K)`` (multi-hot targets, e.g. PASCAL VOC); ``shapes`` gives each
    layer's map shape after pooling (``(C, side, side)`` or ``(units,)``).
    """

    layers: dict[str, torch.Tensor]
    labels: torch.Tensor
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, layer: str) -> torch.Tensor:
        if layer not in self.layers:
            raise FeatureError(
                f"no features for {layer!r}; extracted layers: {', '.join(self.layers)}"
            )
        return self.layers[layer]

    def subset(self, indices: "torch.Tensor | Sequence[int]") -> "Features":
        """The rows ``indices`` of every layer (for one draw of training or test images)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return Features(
            {k: v[idx] for k, v in self.layers.items()}, self.labels[idx], dict(self.shapes)
        )

    def to_dict(self) -> dict:
        """Plain tensors and lists (what :func:`zfcore.cache.save_tensors` stores safely)."""
        return {
            "layers": dict(self.layers),
            "labels": self.labels,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
        }

    @classmethod
    def from_dict(cls, state: dict) -> "Features":
        return cls(
            dict(state["layers"]),
            state["labels"],
            {k: tuple(v) for k, v in state.get("shapes", {}).items()},
        )


def _check_layers(model: nn.Module, layers: Sequence[str]) -> list[str]:
    if not isinstance(layers, (str, int)) and not list(layers):
        raise FeatureError("layers is empty: name at least one, e.g. layers=('layer7',)")
    return layer_keys(layers, model)


def layer_outputs(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[str],
    transform: "Callable[[str, torch.Tensor], Any] | None" = None,
) -> dict[str, Any]:
    """The outputs of ``layers`` for input ``x`` from ONE forward pass of ``model``.

    The pass stops as soon as every requested layer has produced its output, so the cost is that
    of the deepest requested layer. ``transform(layer, output)``, if given, is applied inside the
    pass as each output appears (extraction pools there, so a full-size layer-1 map is freed
    before layer 2 runs). Gradients flow through the returned tensors (fine-tuning uses this);
    wrap the call in ``torch.no_grad()`` for extraction.
    """
    layers = _check_layers(model, layers)
    for layer in layers:  # a wrong size or channel count fails here, not deep inside torch
        try:
            problem = input_problem(model, layer, x)
        except ReceptiveFieldError:  # non-square geometry: no check, the forward pass decides
            problem = None
        if problem:
            raise FeatureError(problem)
    try:
        return forward_layers(model, x, layers, transform=transform)
    except LayerError as e:  # a layer whose module was never called (its forward skips it)
        raise FeatureError(str(e)) from None


def pool_map(t: torch.Tensor, side: int | None, mode: str = "avg") -> torch.Tensor:
    """Flatten one layer's output to ``(N, D)``, pooling a conv map larger than ``side`` x ``side``.

    Convolutional maps ``(N, C, H, W)`` with ``H`` or ``W`` above ``side`` are pooled (adaptive
    average or max) to ``side`` x ``side``; smaller maps and fully connected outputs are only
    flattened. ``side=None`` keeps every map at full size.
    """
    if mode not in POOL_MODES:
        raise FeatureError(f"pool must be one of {POOL_MODES}, not {mode!r}")
    if t.dim() == 4 and side is not None and (t.shape[-1] > side or t.shape[-2] > side):
        pool = F.adaptive_avg_pool2d if mode == "avg" else F.adaptive_max_pool2d
        t = pool(t, (min(side, t.shape[-2]), min(side, t.shape[-1])))
    return t.flatten(1)


def _as_loader(
    data: "Dataset | DataLoader | Iterable", batch_size: int
) -> tuple[Iterable, int | None]:
    if isinstance(data, DataLoader):
        return data, None  # a sampler may pick any subset: the rows grow as they come
    if isinstance(data, Dataset):
        if len(data) == 0:
            raise FeatureError("the data set is empty: nothing to extract")
        return DataLoader(data, batch_size=batch_size, shuffle=False), len(data)
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        if x.shape[0] != torch.as_tensor(y).shape[0]:
            raise FeatureError(f"images ({x.shape[0]}) and labels ({len(y)}) differ in length")
        y = torch.as_tensor(y)
        return [
            (x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)
        ], x.shape[0]
    raise FeatureTypeError(
        f"data must be a torch Dataset, a DataLoader or an (images, labels) pair of "
        f"tensors, not {type(data).__name__}"
    )


@torch.no_grad()
def extract_features(
    model: nn.Module,
    data: "Dataset | DataLoader | tuple",
    layers: Sequence[str] = LAYERS,
    *,
    pooled_side: int | None = 6,
    pool: str = "avg",
    batch_size: int = 64,
    device: "str | torch.device | None" = None,
    progress: bool = True,
    desc: str = "features",
) -> Features:
    """Stream ``data`` through ``model`` once and return :class:`Features` for every layer.

    ``data`` is a Dataset of ``(normalised image, label)``, a DataLoader of such batches or an
    ``(images, labels)`` pair of tensors. The model runs in eval mode (dropout off, as when the
    frozen network is used for transfer, section 5) and is put back in its previous mode after.
    Labels may be class indices or multi-hot vectors. The model runs on ``device`` (default: where
    it is; another device moves it there and back afterwards); the features are returned on the
    CPU. From a GPU each batch's pooled features are copied into the CPU result asynchronously
    (pinned memory), so the GPU never waits for the copy; the call synchronises once at the end.
    """
    from tqdm.auto import tqdm

    layers = _check_layers(model, layers)
    if pool not in POOL_MODES:
        raise FeatureError(f"pool must be one of {POOL_MODES}, not {pool!r}")
    if pooled_side is not None and (not isinstance(pooled_side, int) or pooled_side < 1):
        raise FeatureError(f"pooled_side must be a positive int or None, not {pooled_side!r}")
    loader, n_total = _as_loader(data, batch_size)
    home = model_device(model)
    device = home if device is None else torch.device(device)
    if device != home:
        model.to(device)
    rows = {l: _Rows(n_total, pinned=device.type == "cuda") for l in layers}
    labels = _Rows(n_total)
    shapes: dict[str, tuple[int, ...]] = {}
    try:
        with eval_mode(model):

            def pooled(layer: str, o: torch.Tensor) -> torch.Tensor:
                if layer not in shapes:
                    shapes[layer] = tuple(pool_map_shape(o, pooled_side)[1:])
                return pool_map(o, pooled_side, pool).float()

            bar = tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False)
            for batch in bar:
                x, y = batch[0], batch[1]
                outs = layer_outputs(
                    model, x.to(device, non_blocking=True), layers, transform=pooled
                )
                for l in layers:
                    rows[l].append(outs[l])
                labels.append(torch.as_tensor(y).cpu())
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the asynchronous copies have landed
    finally:
        if device != home:
            model.to(home)
    if len(labels) == 0:
        raise FeatureError("the data yielded no batches: nothing to extract")
    return Features({l: r.result() for l, r in rows.items()}, labels.result(), shapes)


class _Rows:
    """Rows appended batch by batch into one CPU buffer: preallocated when the total is known, else
    grown by doubling. One buffer instead of a list of small per-batch tensors keeps the heap from
    fragmenting between batches and avoids the concatenation's second copy at the end.

    Batches may live on another device: each is copied into its rows asynchronously (``pinned``:
    the buffer is in page-locked memory, so a GPU's copy does not wait for it); the caller
    synchronises the device before reading :meth:`result`."""

    def __init__(self, capacity: int | None, pinned: bool = False):
        self.capacity, self.buffer, self.n, self.pinned = capacity, None, 0, pinned

    def __len__(self) -> int:
        return self.n

    def append(self, batch: torch.Tensor) -> None:
        end = self.n + batch.shape[0]
        if self.buffer is None:
            size = max(self.capacity or 0, end, 1)
            self.buffer = torch.empty(
                (size, *batch.shape[1:]), dtype=batch.dtype, device="cpu", pin_memory=self.pinned
            )
        elif end > self.buffer.shape[0]:
            if batch.device.type == "cuda":
                torch.cuda.synchronize(batch.device)  # earlier copies land before rows move
            grown = torch.empty(
                (max(end, 2 * self.buffer.shape[0]), *batch.shape[1:]),
                dtype=batch.dtype,
                device="cpu",
                pin_memory=self.pinned,
            )
            grown[: self.n] = self.buffer[: self.n]
            self.buffer = grown
        self.buffer[self.n : end].copy_(batch, non_blocking=True)
        self.n = end

    def result(self) -> torch.Tensor:
        if self.n == self.buffer.shape[0]:
            return self.buffer
        return self.buffer[: self.n].clone()


def pool_map_shape(t: torch.Tensor, side: int | None) -> torch.Size:
    """The shape :func:`pool_map` pools ``t`` to, before flattening."""
    if t.dim() != 4 or side is None or (t.shape[-1] <= side and t.shape[-2] <= side):
        return t.shape
    return torch.Size((t.shape[0], t.shape[1], min(side, t.shape[-2]), min(side, t.shape[-1])))


def cached_features(
    model: nn.Module,
    data: "Dataset | DataLoader",
    *,
    data_key: Any,
    cache_dir,
    layers: Sequence[str] = LAYERS,
    pooled_side: int | None = 6,
    pool: str = "avg",
    batch_size: int = 64,
    model_key: Any = None,
    device: "str | torch.device | None" = None,
    progress: bool = True,
    desc: str = "features",
) -> Features:
    """:func:`extract_features`, cached by configuration hash.

    ``data_key`` names the data (for procedural data: the profile identity, split, group and the
    generator version); ``model_key`` names the model and defaults to
    :func:`zfcore.models.model_fingerprint` (a hash of its weights), so a retrained model never
    reuses stale features.
    """
    if data_key is None:
        raise FeatureError(
            "data_key is required: something that identifies the data set (e.g. "
            "{'profile': ..., 'split': 'train', 'group': 'transfer'})"
        )
    layers = _check_layers(model, layers)
    config = {
        "version": FEATURES_VERSION,
        "model": model_key or model_fingerprint(model),
        "data": data_key,
        "layers": list(layers),
        "pooled_side": pooled_side,
        "pool": pool,
    }
    state = cached(
        cache_dir,
        "features",
        config,
        lambda: extract_features(
            model,
            data,
            layers,
            pooled_side=pooled_side,
            pool=pool,
            batch_size=batch_size,
            device=device,
            progress=progress,
            desc=desc,
        ).to_dict(),
    )
    return Features.from_dict(state)
