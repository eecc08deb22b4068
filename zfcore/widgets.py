"""The interactive explorer of notebook 12: turn the paper's knobs yourself, as in the DeepVis toolbox.

Pick a profile and model, a layer (1-7), a feature map and an image (a scene of the data set, a
scikit-image sample photo or your own file); the explorer shows

* the **activation grid** of the layer for that image, the selected map framed (click a cell to
  select its map; the whole layer shares one colour scale, so the brightest cell is the layer's
  most active map);
* the **selected map** itself and the **projection** of its strongest activation to pixels with
  the chosen rule: the paper's deconvnet (section 2.1, Fig. 1), guided backpropagation or the plain
  gradient (:func:`zfcore.deconv.project`);
* the map's **top-9** activations over the validation set, projected and beside their image patches
  (Fig. 2; :func:`zfcore.mining.mine_topk`, mined once per model and cached);
* the **occlusion map** of the current image (Fig. 7; :func:`zfcore.occlusion.occlude`) for the
  chosen grey-square size, on request, behind a progress bar.

Two layers, so the logic is testable without a browser:

* :class:`ExplorerSession` holds the state (:class:`ExplorerState`) and computes every panel as a
  numpy image, caching what is expensive (one forward pass per image for all layers, projections
  per (image, layer, map, rule), the mined top-9 per layer). Plain Python: no widgets.
* :class:`Explorer` lays out ipywidgets around a session and turns widget events into session calls
  (each callback redraws only the panels its change touches).

Launch it in JupyterLab (``notebooks/12_explorer.ipynb``) or as a web app with Voila::

    voila notebooks/12_explorer.ipynb
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .models import hidden_layers, layer_key, layer_names
from .plotting import explorer as draw
from .profiles import Profile, get_profile
from .errors import ZFCoreError

__all__ = ["ExplorerError", "ExplorerState", "ExplorerSession", "Explorer", "SOURCES", "RULES",
           "Timings", "object_focus", "scripted_tour"]

SOURCES = ("dataset", "sample", "upload")
RULES = ("deconvnet", "guided", "gradient")


class ExplorerError(ZFCoreError, ValueError):
    """A choice the explorer cannot make (unknown layer or rule, map out of range, bad image)."""


@dataclass(frozen=True)
class ExplorerState:
    """Everything the user has chosen. Panels are a function of the state (and the model)."""

    layer: str = "layer1"
    unit: int = 0                       # the selected feature map (or unit of layers 6, 7)
    rule: str = "deconvnet"
    source: str = "dataset"             # "dataset", "sample" or "upload"
    index: int = 0                      # data set index (source "dataset")
    sample: str = "cat"                 # sample photo name (source "sample")
    upload: str = ""                    # uploaded file name (source "upload")
    page: int = 0                       # page of the activation grid
    occlusion_size: int = 0             # grey square side in pixels (0: the session's default)

    @property
    def image_key(self) -> tuple:
        return {"dataset": ("dataset", self.index), "sample": ("sample", self.sample),
                "upload": ("upload", self.upload)}[self.source]


class _LRU(OrderedDict):
    """A small least-recently-used cache (memory stays bounded while the user browses)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key, build: Callable[[], Any]):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = build()
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class ExplorerSession:
    """The explorer's state and panels, without widgets.

    ``model`` is any network of :mod:`zfcore.models` (with ``layer_names``) taking
    ``profile.image_size`` inputs; ``dataset`` defaults to ``get_dataset(profile, split)``.
    Every ``select_*`` method validates its argument (raising :class:`ExplorerError` naming the
    allowed values) and returns the new :class:`ExplorerState`; the panel methods return
    ``(H, W, 3)`` ``uint8`` arrays for the current state. ``mined`` passes results of
    :meth:`mined` from another session of the same model (``{layer: TopK}``) to reuse.
    ``threads`` is the torch thread count for the explorer's work (:meth:`computing`): one, since
    the work is mostly one image at a time, which one thread does fastest; on a busy machine two
    threads made it up to sixty times slower here. ``None`` leaves torch's setting alone.

    >>> s = ExplorerSession(trained_model("mini"), "mini")          # doctest: +SKIP
    >>> s.select_layer("layer5"); s.select_unit(s.strongest_unit())  # doctest: +SKIP
    >>> s.projection_panel()                                         # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, profile: "str | Profile" = "mini", *, dataset=None,
                 split: str = "val", class_names: Sequence[str] | None = None,
                 page_size: int = 192, cols: int = 16, cell: int = 30, panel: int = 224,
                 top_k: int = 9, mine_images: int | None = None, mined: dict | None = None,
                 threads: int | None = 1):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model.eval()
        self.profile = get_profile(profile)
        size = getattr(model, "input_size", None)
        if size is not None and size != self.profile.image_size:
            raise ExplorerError(f"the model takes {size}px inputs but profile "
                                f"{self.profile.name!r} makes {self.profile.image_size}px images: "
                                f"pass the profile the model was built for")
        for name, v in (("page_size", page_size), ("cols", cols), ("cell", cell), ("panel", panel),
                        ("top_k", top_k)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ExplorerError(f"{name} must be a positive integer, not {v!r}")
        self.split = split
        self._dataset = dataset
        self._class_names = list(class_names) if class_names is not None else None
        self.layers = hidden_layers(model)
        if not self.layers:
            raise ExplorerError(f"{type(model).__name__}.layer_names names no layer1 ... layer7")
        self.page_size, self.cols, self.cell, self.panel = page_size, cols, cell, panel
        self.top_k = top_k
        self.mine_images = mine_images
        self.threads = threads
        self.state = ExplorerState(layer=self.layers[0], occlusion_size=self.default_occlusion_size())
        self._uploads: dict[str, torch.Tensor] = {}
        self._images = _LRU(16)           # image key -> (3, S, S) in [0, 1] and its label
        self._acts = _LRU(8)              # image key -> {layer: activations}
        self._grids = _LRU(32)            # (image key, layer, page) -> grid without highlight
        self._projections = _LRU(256)     # (image key, layer, unit, rule) -> (3, S, S)
        self._top = _LRU(64)              # (layer, unit, rule) -> top-k patches and projections
        self._mined: dict[str, Any] = dict(mined or {})  # layer -> mining result (TopK)
        self._occlusions = _LRU(16)       # (image key, layer, unit, size) -> occlusion result

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def for_profile(cls, profile: "str | Profile" = "mini", arch: str = "zfnet",
                    **kwargs) -> "ExplorerSession":
        """A session on the profile's trained network (:func:`zfcore.train.trained_model`, cached;
        trained on first use)."""
        from .train import trained_model
        return cls(trained_model(profile, arch=arch), profile, **kwargs)

    @property
    def dataset(self):
        if self._dataset is None:
            from .data import get_dataset
            self._dataset = get_dataset(self.profile, self.split)
        return self._dataset

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            n = self.n_units("logits")
            try:
                from .data import class_names
                names = list(class_names(self.profile))
            except Exception:
                names = []
            self._class_names = names if len(names) == n else [f"class {i}" for i in range(n)]
        return self._class_names

    def sample_names(self) -> list[str]:
        from .data.images import SAMPLE_PHOTOS
        return list(SAMPLE_PHOTOS)

    def default_occlusion_size(self) -> int:
        """A square about a sixth of the image side: the size of an object part in the scenes."""
        return max(4, self.profile.image_size // 6)

    def occlusion_sizes(self) -> list[int]:
        s = self.profile.image_size
        return sorted({max(4, s // d) for d in (12, 8, 6, 4)})

    def computing(self) -> "_torch_threads":
        """``with session.computing():`` runs torch with :attr:`threads` threads, then restores."""
        return _torch_threads(self.threads)

    # ------------------------------------------------------------------ state transitions
    def _set(self, **changes) -> ExplorerState:
        self.state = replace(self.state, **changes)
        return self.state

    def _check_layer(self, layer: "str | int") -> str:
        return layer_key(layer, self.layers)

    def select_layer(self, layer: "str | int") -> ExplorerState:
        """Show ``layer`` ("layer3" or 3). The selected map is kept where the new layer has it."""
        key = self._check_layer(layer)
        unit = min(self.state.unit, self.n_units(key) - 1)
        return self._set(layer=key, unit=unit, page=unit // self.page_size)

    def select_unit(self, unit: int) -> ExplorerState:
        """Select feature map ``unit`` of the current layer (the grid turns to its page)."""
        n = self.n_units()
        if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)) or not 0 <= unit < n:
            raise ExplorerError(f"feature map {unit!r} does not exist: {self.state.layer} has maps "
                                f"0 to {n - 1}")
        return self._set(unit=int(unit), page=int(unit) // self.page_size)

    def select_page(self, page: int) -> ExplorerState:
        pages = self.n_pages()
        if not isinstance(page, (int, np.integer)) or not 0 <= page < pages:
            raise ExplorerError(f"page {page!r} does not exist: {self.state.layer} has {pages} page(s)")
        return self._set(page=int(page))

    def select_cell(self, k: int) -> ExplorerState:
        """Select the map in cell ``k`` of the grid's current page (what a click does)."""
        g = self.geometry()
        if not 0 <= k < g.count:
            raise ExplorerError(f"cell {k} is empty: this page holds {g.count} maps")
        return self.select_unit(g.first + k)

    def select_rule(self, rule: str) -> ExplorerState:
        if rule not in RULES:
            raise ExplorerError(f"unknown projection rule {rule!r}: choose one of {', '.join(RULES)}")
        return self._set(rule=rule)

    def select_dataset_image(self, index: int) -> ExplorerState:
        n = len(self.dataset)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
            raise ExplorerError(f"image index {index!r} is out of range: the {self.split} split has "
                                f"images 0 to {n - 1}")
        return self._set(source="dataset", index=int(index))

    def select_sample(self, name: str) -> ExplorerState:
        names = self.sample_names()
        if name not in names:
            raise ExplorerError(f"unknown sample photo {name!r}: choose one of {', '.join(names)}")
        return self._set(source="sample", sample=name)

    def upload(self, name: str, content: bytes) -> ExplorerState:
        """Use an uploaded file (its bytes) as the image. It is decoded by
        :func:`zfcore.data.load_image` (safe decoding, EXIF rotation, centre square); a file that
        is not a usable image raises :class:`ExplorerError` with the loader's explanation."""
        from .data.images import ImageLoadError, load_image

        content = bytes(content)
        if not content:
            raise ExplorerError(f"{name!r} is empty: upload a JPEG, PNG or WebP photo")
        key = f"{Path(name).name}#{hashlib.sha1(content).hexdigest()[:10]}"
        if key not in self._uploads:
            suffix = Path(name).suffix.lower() or ".img"
            fd, tmp = tempfile.mkstemp(prefix="zfcore-upload-", suffix=suffix)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(content)
                image = load_image(tmp, self.profile, normalized=False)
            except ImageLoadError as e:
                raise ExplorerError(str(e).replace(tmp, repr(Path(name).name))) from None
            finally:
                os.unlink(tmp)
            self._uploads[key] = image
        return self._set(source="upload", upload=key)

    def select_occlusion_size(self, size: int) -> ExplorerState:
        s = self.profile.image_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= s:
            raise ExplorerError(f"occlusion square of {size!r} pixels: choose 1 to {s} "
                                f"(the image side), e.g. {self.default_occlusion_size()}")
        return self._set(occlusion_size=int(size))

    # ------------------------------------------------------------------ the image and its activations
    def image(self) -> tuple[torch.Tensor, int | None]:
        """The current image ``(3, S, S)`` in [0, 1] and its label (``None`` for photos)."""
        return self._loaded()[:2]

    def _loaded(self) -> tuple[torch.Tensor, int | None, tuple | None]:
        st = self.state
        return self._images.get_or(st.image_key, lambda: self._load_image(st))

    def _load_image(self, st: ExplorerState) -> tuple[torch.Tensor, int | None, tuple | None]:
        """``(image in [0, 1], label, object box)``; label and box are ``None`` where unknown."""
        if st.source == "dataset":
            ds = self.dataset
            if hasattr(ds, "scenes"):
                b = ds.scenes([st.index])
                box = tuple(int(round(float(v))) for v in b.boxes[0])
                return b.images[0], int(b.labels[0]), box
            from .data import denormalize
            x, y = ds[st.index]
            return denormalize(x[None], self.profile)[0].clamp(0, 1), int(y), None
        if st.source == "sample":
            from .data.images import sample_photos
            return sample_photos(self.profile, [st.sample], normalized=False).images[0], None, None
        return self._uploads[st.upload], None, None

    def model_input(self) -> torch.Tensor:
        """The current image normalised for the network, ``(1, 3, S, S)``."""
        from .data import normalize
        return normalize(self.image()[0][None], self.profile)

    def activations(self) -> dict[str, torch.Tensor]:
        """``{layer: (C, H, W) or (C,)}`` and ``"logits"`` for the current image, from one forward
        pass (cached per image)."""
        from .deconv import layer_activations

        def run():
            out = layer_activations(self.model, self.model_input(), self.layers + ["logits"])
            return {k: v[0].detach() for k, v in out.items()}
        return self._acts.get_or(self.state.image_key, run)

    def n_units(self, layer: str | None = None) -> int:
        """Feature maps (or units) of ``layer`` (default: the current one)."""
        return int(self.activations()[layer or self.state.layer].shape[0])

    def n_pages(self) -> int:
        return -(-self.n_units() // self.page_size)

    def strongest_unit(self, layer: str | None = None) -> int:
        """The map of ``layer`` with the largest activation on the current image."""
        a = self.activations()[layer or self.state.layer]
        return int(a.flatten(1).amax(1).argmax()) if a.dim() == 3 else int(a.argmax())

    def prediction(self, k: int = 5) -> list[tuple[str, float]]:
        """The network's top-``k`` classes for the current image with their probabilities."""
        p = self.activations()["logits"].softmax(0)
        top = p.topk(min(k, p.numel()))
        return [(self.class_names[int(i)], float(v)) for v, i in zip(top.values, top.indices)]

    def strongest_position(self) -> tuple[int, int] | None:
        """``(y, x)`` of the selected map's strongest activation (``None`` for layers 6, 7)."""
        a = self.activations()[self.state.layer][self.state.unit]
        if a.dim() == 0:
            return None
        y, x = divmod(int(a.argmax()), a.shape[-1])
        return y, x

    # ------------------------------------------------------------------ panels
    def geometry(self) -> draw.GridGeometry:
        return draw.grid_geometry(self.n_units(), self.state.page, self.page_size, self.cols, self.cell)

    def image_panel(self) -> np.ndarray:
        return draw.upscale(draw.image_rgb(self.image()[0]), self.panel)

    def grid_panel(self) -> np.ndarray:
        """The current page of the activation grid with the selected map framed."""
        st = self.state
        g = self.geometry()
        base = self._grids.get_or((st.image_key, st.layer, st.page),
                                  lambda: draw.activation_grid(self.activations()[st.layer], g))
        return draw.highlight_cell(base, g, st.unit)

    def feature_map_panel(self) -> np.ndarray:
        """The selected map, enlarged, on its own colour scale (layers 6, 7: the unit's value on
        the layer's scale)."""
        acts = self.activations()[self.state.layer]
        a = acts[self.state.unit]
        if a.dim() == 0:
            return draw.upscale(draw.colorize(a.reshape(1, 1), float(acts.max())), self.panel)
        return draw.upscale(draw.colorize(a), self.panel)

    def projection(self) -> torch.Tensor:
        """The pixel-space projection ``(3, S, S)`` of the selected map's strongest activation
        on the current image, with the current rule (:func:`zfcore.deconv.project`)."""
        from .deconv import project, requests

        st = self.state

        def run():
            pos = self.strongest_position()
            req = requests(0, st.unit) if pos is None else requests(0, st.unit, *pos)
            return project(self.model, self.model_input(), st.layer, req, rule=st.rule).pixels[0]
        return self._projections.get_or((st.image_key, st.layer, st.unit, st.rule), run)

    def projection_panel(self) -> np.ndarray:
        return draw.upscale(draw.projection_rgb(self.projection()), self.panel)

    # ------------------------------------------------------------------ ground truth
    def object_box(self) -> tuple[int, int, int, int] | None:
        """The object box ``(x0, y0, x1, y1)`` of the current image (data set scenes only)."""
        return self._loaded()[2]

    def projection_on_object(self) -> tuple[float, float] | None:
        """``(energy share, area share)``: the share of the projection's energy (sum of squares)
        that falls inside the object box, and the box's share of the image. A projection that
        is about the object (sections 4 and 4.2) has the first clearly above the second.
        ``None`` when the image has no ground truth."""
        box = self.object_box()
        if box is None:
            return None
        x0, y0, x1, y1 = box
        e = self.projection().pow(2).sum(0)
        total = float(e.sum())
        if total == 0:
            return None
        inside = float(e[y0:y1, x0:x1].sum())
        return inside / total, (y1 - y0) * (x1 - x0) / float(e.numel())

    # ------------------------------------------------------------------ top-9 and occlusion
    def mined(self, layer: str | None = None):
        """The top-k of every map of ``layer`` over the validation images
        (:func:`zfcore.mining.mine_dataset`: one streaming pass, cached on disk by the model's
        weights). Layers 1-5 are mined together (the same cache entry as notebook 03), layers 6
        and 7 together."""
        from .mining import DEFAULT_LAYERS, mine_dataset

        layer = layer or self.state.layer
        if layer not in self._mined:
            conv = [l for l in self.layers if l in DEFAULT_LAYERS]
            group = conv if layer in conv else [l for l in self.layers if l not in conv]
            result = mine_dataset(self.model, self.profile, self.split, k=self.top_k,
                                  layers=group, n_images=self.mine_images)
            for l in group:
                self._mined[l] = result
        return self._mined[layer]

    def prepare(self) -> None:
        """Do the heavy work once, up front: mine the top-k of every layer (a pass or two over the
        validation images; a disk read when cached), so that no later click waits for it."""
        for layer in self.layers:
            self.mined(layer)

    def top(self) -> dict[str, Any]:
        """The selected map's top-k over the validation set (Fig. 2): for each entry (lists of
        ``(3, h, h)`` tensors, ``h`` up to the field's size), the image
        patch its activation sees and the projection of that activation with the current rule,
        both cut to the part of the receptive field inside the image (made square with a neutral
        border where the field reaches past the edge); values, data set indices and labels."""
        from .data import normalize
        from .deconv import project, requests
        from .mining import top_requests
        from .receptive import receptive_field

        st = self.state

        def run():
            result = self.mined(st.layer)
            lt = result[st.layer]
            ids, req = top_requests(result, st.layer, channels=[st.unit])
            if len(req) == 0:
                raise ExplorerError(f"{st.layer} map {st.unit} has no mined activations")
            ds = self.dataset
            if hasattr(ds, "scenes"):
                images01 = ds.scenes(ids.tolist()).images
            else:
                from .data import denormalize
                images01 = denormalize(torch.stack([ds[int(i)][0] for i in ids]), self.profile).clamp(0, 1)
            fc = self.activations()[st.layer].dim() == 1
            if fc:  # a unit of layer 6 or 7 has no position: project the unit itself
                req = requests(req.image, req.channel)
            pixels = project(self.model, normalize(images01, self.profile), st.layer, req,
                             rule=st.rule).pixels
            rf = receptive_field(self.model, st.layer)
            patches, projections = [], []
            for r in range(len(req)):
                # the part of the activation's receptive field inside its image (Fig. 2's patch)
                y, x = max(0, int(req.y[r])), max(0, int(req.x[r]))
                box = rf.box(y, x, self.profile.image_size)
                patches.append(draw.crop_square(images01[int(req.image[r])], box, fill=0.5))
                projections.append(draw.crop_square(pixels[r], box, fill=0.0))
            k = len(req)
            return {"patches": patches, "projections": projections,
                    "values": lt.values[st.unit, :k].clone(), "images": lt.images[st.unit, :k].clone(),
                    "labels": lt.labels[st.unit, :k].clone(), "n_images": result.n_images}
        return self._top.get_or((st.layer, st.unit, st.rule), run)

    def top_panels(self) -> tuple[np.ndarray, np.ndarray, str]:
        """The top-9 projections and patches as two 3x3 tiles, and a caption with the numbers."""
        t = self.top()
        side = max(8, (self.panel - 4) // 3)
        proj = draw.tile([draw.projection_rgb(p) for p in t["projections"]], size=side)
        patches = draw.tile([draw.image_rgb(p) for p in t["patches"]], size=side)
        labels = [int(l) for l in t["labels"] if int(l) >= 0]
        common = ""
        if labels:
            top_label = max(set(labels), key=labels.count)
            common = (f"; {labels.count(top_label)} of {len(labels)} are "
                      f"{self.class_names[top_label] if top_label < len(self.class_names) else top_label}")
        v = t["values"]
        caption = (f"{self.state.layer} map {self.state.unit}: its {len(v)} strongest activations "
                   f"over {t['n_images']} {self.split} images ({float(v.min()):.3g} to "
                   f"{float(v.max()):.3g}){common}")
        return proj, patches, caption

    def occlusion_stride(self, window: int) -> int:
        """Step between square positions: about 24 positions per axis, whatever the image size."""
        return max(1, (self.profile.image_size - window) // 23)

    def occlusion(self, progress: bool = False, mode: str = "exact"):
        """The occlusion maps of the current image (section 4.2, Fig. 7) for the selected map and
        square size: :func:`zfcore.occlusion.occlude` with the true class as target (the network's
        own prediction for photos). ``mode`` is ``"exact"`` or ``"fast"`` (Krypton's
        approximations, :data:`zfcore.occlusion.PRESETS`). Cached per (image, layer, map, square,
        mode)."""
        from .occlusion import occlude

        st = self.state
        window = st.occlusion_size

        def run():
            return occlude(self.model, self.model_input(), self.image()[1], window=window,
                           stride=self.occlusion_stride(window), layer=st.layer, feature=st.unit,
                           progress=progress, mode=mode)
        return self._occlusions.get_or(self._occlusion_key(mode), run)

    def _occlusion_key(self, mode: str) -> tuple:
        st = self.state
        return (st.image_key, st.layer, st.unit, st.occlusion_size, mode)

    def occlusion_mode(self) -> str:
        """The mode the occlusion panel shows first: ``"exact"`` once that map is computed (and
        cached), else ``"fast"``; :meth:`refine_occlusion` computes the exact one."""
        return "exact" if self._occlusion_key("exact") in self._occlusions else "fast"

    def refine_occlusion(self, progress: bool = False):
        """The exact occlusion maps of the current view (what the fast preset approximates)."""
        return self.occlusion(progress, mode="exact")

    def occlusion_panel(self, progress: bool = False, mode: "str | None" = None) -> tuple[np.ndarray, str]:
        """Two maps over the image, dark where covering that spot with the grey square lowers the
        value: the selected map's total activity (Fig. 7b; from its lowest to its highest value)
        and p(correct class) (Fig. 7d; on the absolute scale 0 to 1). ``mode`` defaults to
        :meth:`occlusion_mode` (fast first, exact once refined); the caption says which it shows."""
        mode = self.occlusion_mode() if mode is None else mode
        r = self.occlusion(progress, mode)
        image = self.image()[0]
        activity = draw.overlay_heatmap(image, r.feature_total, cmap="magma")
        prob = draw.overlay_heatmap(image, r.prob_target, cmap="magma", vmin=0.0, vmax=1.0)
        panel = draw.tile([draw.upscale(activity, self.panel), draw.upscale(prob, self.panel)], cols=2)
        x, y = r.most_damaging()
        name = self.class_names[r.target] if r.target < len(self.class_names) else str(r.target)
        shown = ("exact" if r.exact else
                 f"approximate (fast: {100 * float(r.computed.double().mean()):.0f} % of the "
                 f"squares computed, cones cut to {r.truncate:g} of each map; exact follows)")
        caption = (f"{shown}. left: {r.layer} map {r.feature} activity ({r.feature_total_clean:.3g} "
                   f"uncovered, down to {float(r.feature_total.min()):.3g}); right: p({name}) "
                   f"({r.prob_target_clean:.2f} uncovered, down to {float(r.prob_target.min()):.2f} "
                   f"with the {r.window} px square at x={x:.0f}, y={y:.0f})")
        return panel, caption

    def snapshot_panels(self, occlusion: bool = True) -> dict[str, np.ndarray]:
        """Every panel of the current state, titled (for :func:`zfcore.plotting.explorer.snapshot_figure`)."""
        with self.computing():
            return self._snapshot_panels(occlusion)

    def _snapshot_panels(self, occlusion: bool) -> dict[str, np.ndarray]:
        st = self.state
        name, prob = self.prediction(1)[0]
        proj, patches, _ = self.top_panels()
        panels = {
            f"image (predicted: {name}, {100 * prob:.0f}%)": self.image_panel(),
            f"{st.layer} activations, map {st.unit} framed": self.grid_panel(),
            f"{st.layer} map {st.unit}": self.feature_map_panel(),
            f"{st.rule} projection of its strongest activation": self.projection_panel(),
            f"top-9 over the {self.split} set: projections": proj,
            "top-9: image patches": patches,
        }
        if occlusion:
            panel, _ = self.occlusion_panel(mode="exact")
            panels[f"occlusion ({st.occlusion_size} px square): map {st.unit} activity | "
                   f"p(class)"] = panel
        return panels

    # ------------------------------------------------------------------ panel captions
    def captions(self) -> dict[str, str]:
        """One line under each panel, saying what it shows (numbers included)."""
        st = self.state
        acts = self.activations()[st.layer]
        a = acts[st.unit]
        label = self.image()[1]
        truth = f", true class {self.class_names[label]}" if label is not None else ""
        source = {"dataset": f"{self.split} image {st.index}", "sample": f"sample photo '{st.sample}'",
                  "upload": f"your file '{st.upload.split('#')[0]}'"}[st.source]
        g = self.geometry()
        pos = self.strongest_position()
        where = f" at (y={pos[0]}, x={pos[1]})" if pos else ""
        focus = self.projection_on_object()
        if focus is not None:
            where += f"; {100 * focus[0]:.0f}% of it on the object ({100 * focus[1]:.0f}% of the image)"
        return {
            "image": f"{source}{truth}",
            "grid": (f"{st.layer}: maps {g.first}-{g.first + g.count - 1} of {acts.shape[0]}"
                     f" (page {st.page + 1}/{self.n_pages()}); click a cell to select its map"),
            "map": f"{st.layer} map {st.unit}: max {float(a.max()):.3g} (layer max {float(acts.max()):.3g})",
            "projection": f"{st.rule} projection of map {st.unit}'s strongest activation{where}",
        }


# ---------------------------------------------------------------------------------------------
# Timings: what the benchmark and the notebook report
# ---------------------------------------------------------------------------------------------

@dataclass
class Timings:
    """Seconds per user action (callback), in order: ``(action, seconds)``; ``states`` (filled by
    :func:`scripted_tour`) holds the session state after each record."""

    records: list[tuple[str, float]] = field(default_factory=list)
    states: list[ExplorerState] = field(default_factory=list)

    def add(self, action: str, seconds: float) -> None:
        self.records.append((action, float(seconds)))

    def seconds(self, skip_first: bool = False) -> np.ndarray:
        s = np.array([t for _, t in self.records], dtype=float)
        return s[1:] if skip_first else s

    def percentile(self, q: float, skip_first: bool = True) -> float:
        s = self.seconds(skip_first)
        return float(np.percentile(s, q)) if s.size else float("nan")


# ---------------------------------------------------------------------------------------------
# The ipywidgets view
# ---------------------------------------------------------------------------------------------

def _px(n: int) -> str:
    return f"{int(n)}px"


class Explorer:
    """The ipywidgets app around an :class:`ExplorerSession` (display it, or ``app.widget``).

    Every control calls one session method and then redraws only the panels its change touches;
    a failing choice (a file that is not an image, say) is reported in the status line instead of
    raising into the notebook. ``timings`` records how long each callback took.

    >>> app = Explorer(profile="mini")        # the trained ZF-mini (cached)   # doctest: +SKIP
    >>> app                                   # shows the app in JupyterLab or Voila  # doctest: +SKIP
    """

    def __init__(self, session: ExplorerSession | None = None, *, profile: str = "mini",
                 arch: str = "zfnet", profiles: Sequence[str] = ("tiny", "mini"),
                 archs: Sequence[str] = ("zfnet", "krizhevsky"),
                 session_factory: Callable[..., ExplorerSession] | None = None,
                 refine_delay: "float | None" = 1.0):
        import ipywidgets as W

        self._factory = session_factory or ExplorerSession.for_profile
        # occlusion: the fast map first, the exact one after refine_delay seconds without an
        # action (None: only on request, a second press of the occlusion button)
        self.refine_delay = refine_delay
        self._occ_shown: "tuple | None" = None     # (occlusion key, mode) of the map on show
        self._actions = 0                          # user actions so far (an idle timer's check)
        self._refine_timer: "threading.Timer | None" = None
        self._lock = threading.RLock()             # one action at a time (the timer's included)
        self.timings = Timings()
        self._syncing = False
        self._shown_first = -1
        if session is None:
            session = self._factory(profile, arch)
        self.session = session
        self._arch = arch
        s = session
        profiles = list(dict.fromkeys([*profiles, s.profile.name]))
        archs = list(dict.fromkeys([*archs, arch]))

        # --- controls -------------------------------------------------------------------------
        small = W.Layout(width="auto")
        label = {"description_width": "0px"}
        self.profile_dd = W.Dropdown(options=profiles, value=s.profile.name, description="profile",
                                     layout=W.Layout(width="170px"))
        self.arch_dd = W.Dropdown(options=archs, value=arch, description="model",
                                  layout=W.Layout(width="200px"))
        self.layer_tb = W.ToggleButtons(options=[(k.replace("layer", ""), k) for k in s.layers],
                                        value=s.state.layer,
                                        style={**label, "button_width": "34px"}, layout=small)
        self.unit_box = W.BoundedIntText(value=0, min=0, max=s.n_units() - 1, description="map",
                                         style={"description_width": "40px"},
                                         layout=W.Layout(width="130px"))
        self.strongest_btn = W.Button(description="strongest map", tooltip="select the layer's "
                                      "most active map on this image", layout=W.Layout(width="130px"))
        self.prev_btn = W.Button(description="\u25c0", tooltip="previous page of maps",
                                 layout=W.Layout(width="40px"))
        self.next_btn = W.Button(description="\u25b6", tooltip="next page of maps",
                                 layout=W.Layout(width="40px"))
        self.rule_tb = W.ToggleButtons(options=list(RULES), value=s.state.rule,
                                       layout=small,
                                       style={**label, "button_width": "90px"})
        self.source_tb = W.ToggleButtons(options=[("data set", "dataset"), ("sample photo", "sample"),
                                                  ("my file", "upload")], value=s.state.source,
                                         layout=small,
                                         style={**label, "button_width": "100px"})
        self.index_box = W.BoundedIntText(value=s.state.index, min=0, max=max(0, len(s.dataset) - 1),
                                          description="index", style={"description_width": "40px"},
                                          layout=W.Layout(width="130px"))
        self.sample_dd = W.Dropdown(options=s.sample_names(), value=s.state.sample,
                                    description="photo", style={"description_width": "40px"},
                                    layout=W.Layout(width="170px"))
        self.upload_w = W.FileUpload(accept="image/*", multiple=False, description="upload")
        self.occ_size_dd = W.Dropdown(options=[(f"{n} px", n) for n in s.occlusion_sizes()],
                                      value=s.state.occlusion_size if s.state.occlusion_size in
                                      s.occlusion_sizes() else s.occlusion_sizes()[0],
                                      description="square", layout=W.Layout(width="160px"))
        self.occ_btn = W.Button(description="occlusion map", icon="th",
                                tooltip="slide a grey square over the image (Fig. 7)")
        # tqdm draws its progress bar here while the occlusion map is computed
        self.occ_progress = W.Output(layout=W.Layout(width="100%"))
        self.status = W.HTML(value="")
        # tqdm draws progress bars here while another model is loaded (or trained, first time)
        self.model_progress = W.Output()

        # --- panels ---------------------------------------------------------------------------
        p = _px(s.panel)
        self.image_img = W.Image(format="png", layout=W.Layout(width=p, height=p))
        self.map_img = W.Image(format="png", layout=W.Layout(width=p, height=p))
        self.proj_img = W.Image(format="png", layout=W.Layout(width=p, height=p))
        self.top_proj_img = W.Image(format="png", layout=W.Layout(width=p, height=p))
        self.top_patch_img = W.Image(format="png", layout=W.Layout(width=p, height=p))
        self.occ_img = W.Image(format="png", layout=W.Layout(width=_px(2 * s.panel + 2), height=p))
        self.prediction_html = W.HTML()
        widths = {"grid": "auto", "occlusion": _px(2 * s.panel + 2)}
        self.captions = {k: W.HTML(layout=W.Layout(width=widths.get(k, p)))
                         for k in ("image", "grid", "map", "projection", "top9", "occlusion")}
        # The activation grid: the rendered page with a grid of transparent buttons on top (same
        # CSS grid area), one per cell, so a click on a cell selects its map in Voila and
        # JupyterLab without extra packages.
        self.grid_img = W.Image(format="png", layout=W.Layout(grid_area="cell", margin="0"))
        cell = _px(s.cell)
        shared_layout = W.Layout(width=cell, height=cell, padding="0", margin="0", border="0")
        shared_style = W.ButtonStyle(button_color="transparent")
        self.grid_buttons = [W.Button(description="", layout=shared_layout, style=shared_style)
                             for _ in range(s.page_size)]
        for k, b in enumerate(self.grid_buttons):
            b.on_click(self._cell_handler(k))
        self.grid_box = W.GridBox(layout=W.Layout(grid_area="cell", grid_gap="0", margin="0"))
        self.grid_box.add_class("zf-grid-cells")
        self.grid_stack = W.GridBox([self.grid_img, self.grid_box],
                                    layout=W.Layout(grid_template_areas='"cell"'))
        self.grid_stack.add_class("zf-grid")

        def labelled(title, *items):
            return W.HBox([W.HTML(f"<b>{title}</b>", layout=W.Layout(width="80px")), *items],
                          layout=W.Layout(align_items="center"))

        def column(title, img, cap, *extra):
            return W.VBox([W.HTML(f"<b>{title}</b>"), img, cap, *extra])

        header = W.HTML("<h3 style='margin:4px 0'>Explorer: Zeiler &amp; Fergus (2014), "
                        "layers 1-7 of a trained ZF network</h3>")
        rows = [
            header,
            W.HBox([self.profile_dd, self.arch_dd]),
            labelled("image", self.source_tb, self.index_box, self.sample_dd, self.upload_w),
            labelled("layer", self.layer_tb, self.unit_box, self.strongest_btn),
            labelled("projection", self.rule_tb),
            self.status,
            self.model_progress,
            W.HBox([column("image", self.image_img, self.captions["image"], self.prediction_html),
                    W.VBox([W.HTML("<b>activation grid</b>"), self.grid_stack,
                            W.HBox([self.prev_btn, self.next_btn, self.captions["grid"]])])]),
            W.HBox([column("selected map", self.map_img, self.captions["map"]),
                    column("projection to pixels", self.proj_img, self.captions["projection"]),
                    column("top-9 projections (Fig. 2)", self.top_proj_img, self.captions["top9"]),
                    column("top-9 image patches", self.top_patch_img, W.HTML())]),
            W.HBox([column("occlusion (Fig. 7): the map's activity and p(class) as a grey square "
                           "covers each spot", self.occ_img, self.captions["occlusion"],
                           W.HBox([self.occ_size_dd, self.occ_btn]), self.occ_progress)]),
        ]
        self.widget = W.VBox(rows)
        self.widget.add_class("zf-explorer")
        # Stable CSS classes: for styling, and for the browser test to find each part.
        for w, name in ((self.image_img, "zf-image"), (self.grid_img, "zf-grid-image"),
                        (self.map_img, "zf-map"), (self.proj_img, "zf-projection"),
                        (self.top_proj_img, "zf-top-projections"),
                        (self.top_patch_img, "zf-top-patches"), (self.occ_img, "zf-occlusion"),
                        (self.layer_tb, "zf-layer"), (self.rule_tb, "zf-rule"),
                        (self.source_tb, "zf-source"), (self.unit_box, "zf-unit"),
                        (self.upload_w, "zf-upload"), (self.status, "zf-status"),
                        (self.occ_btn, "zf-occlusion-button")):
            w.add_class(name)

        # --- events ---------------------------------------------------------------------------
        self.layer_tb.observe(self._on_layer, "value")
        self.unit_box.observe(self._on_unit, "value")
        self.strongest_btn.on_click(self._on_strongest)
        self.prev_btn.on_click(lambda _: self._on_page(-1))
        self.next_btn.on_click(lambda _: self._on_page(+1))
        self.rule_tb.observe(self._on_rule, "value")
        self.source_tb.observe(self._on_source, "value")
        self.index_box.observe(self._on_index, "value")
        self.sample_dd.observe(self._on_sample, "value")
        self.upload_w.observe(self._on_upload, "value")
        self.occ_size_dd.observe(self._on_occlusion_size, "value")
        self.occ_btn.on_click(self._on_occlusion)
        self.profile_dd.observe(self._on_model, "value")
        self.arch_dd.observe(self._on_model, "value")

        self._act("first draw", session.prepare, ALL_PARTS)

    # ------------------------------------------------------------------ display
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def show_state(self, state: ExplorerState) -> bool:
        """Go back to a state of this session (e.g. one saved before a scripted tour)."""
        def change():
            if state.source == "upload" and state.upload not in self.session._uploads:
                raise ExplorerError("that uploaded file is no longer in this session")
            self.session.state = state
        return self._act("restore the view", change, ALL_PARTS)

    # ------------------------------------------------------------------ drawing
    def _act(self, action: str, change: Callable[[], Any], parts: "set[str] | frozenset[str]") -> bool:
        """Apply one user action: the session change, then the redraw of ``parts``, with the
        session's thread count (:meth:`ExplorerSession.computing`); the time it took goes to
        ``timings`` and the status line. Errors are shown, not raised."""
        with self._lock:
            self._actions += 1
            ok = self._act_locked(action, change, parts)
        self._schedule_refine()
        return ok

    def _act_locked(self, action: str, change: Callable[[], Any], parts) -> bool:
        t0 = time.perf_counter()
        self.status.value = f"<span style='color:#666'>\u23f3 {action} ...</span>"
        try:
            with self.session.computing():
                change()
                self._redraw(parts)
        except Exception as e:  # shown in the app: a callback's exception is otherwise invisible
            if isinstance(e, (ExplorerError, ValueError, TypeError)):
                message = str(e)
            else:
                logging.getLogger(__name__).exception("explorer: %s failed", action)
                message = f"{action} failed ({type(e).__name__}: {e})"
            self.status.value = f"<span style='color:#b00020'>\u26a0 {_escape(message)}</span>"
            with contextlib.suppress(Exception):
                self._sync_controls()
            return False
        dt = time.perf_counter() - t0
        self.timings.add(action, dt)
        self.status.value = f"<span style='color:#2e7d32'>\u2713 {_escape(action)} in {dt:.2f} s</span>"
        return True

    def _redraw(self, parts) -> None:
        s = self.session
        if "image" in parts:
            self.image_img.value = draw.png_bytes(s.image_panel())
            self.prediction_html.value = _prediction_html(s.prediction())
        if "grid" in parts:
            g = s.geometry()
            self.grid_img.value = draw.png_bytes(s.grid_panel())
            self._layout_grid(g)
        if "map" in parts:
            self.map_img.value = draw.png_bytes(s.feature_map_panel())
        if "projection" in parts:
            self.proj_img.value = draw.png_bytes(s.projection_panel())
        if "top9" in parts:
            projections, patches, caption = s.top_panels()
            self.top_proj_img.value = draw.png_bytes(projections)
            self.top_patch_img.value = draw.png_bytes(patches)
            self.captions["top9"].value = _caption(caption)
        if "occlusion" in parts:
            self._show_occlusion(None)
        caps = s.captions()
        for k in ("image", "grid", "map", "projection"):
            self.captions[k].value = _caption(caps[k])
        self._sync_controls()

    def _layout_grid(self, g: draw.GridGeometry) -> None:
        size = dict(width=_px(g.width), height=_px(g.height))
        self.grid_img.layout.width, self.grid_img.layout.height = size["width"], size["height"]
        lay = self.grid_box.layout
        cols = f"repeat({g.cols}, {_px(g.cell)})"
        rows = f"repeat({g.rows}, {_px(g.cell)})"
        if lay.grid_template_columns != cols:
            lay.grid_template_columns = cols
        if lay.grid_template_rows != rows:
            lay.grid_template_rows = rows
        lay.width, lay.height = size["width"], size["height"]
        if len(self.grid_box.children) != g.count:
            self.grid_box.children = tuple(self.grid_buttons[:g.count])
        if self._shown_first != g.first:
            for k, b in enumerate(self.grid_buttons[:g.count]):
                b.tooltip = f"map {g.first + k}"
            self._shown_first = g.first

    def _show_occlusion(self, result_png: bytes | None, caption: str = "",
                        shown: "tuple | None" = None) -> None:
        """Show an occlusion panel (``shown``: its occlusion key and mode) or clear it."""
        if result_png is None:
            self.occ_img.value = draw.png_bytes(np.full((8, 16, 3), 235, np.uint8))
            caption = "press 'occlusion map' to slide a grey square over this image"
        else:
            self.occ_img.value = result_png
        self._occ_shown = shown if result_png is not None else None
        approximate = self._occ_shown is not None and self._occ_shown[1] != "exact"
        self.occ_btn.description = "exact occlusion map" if approximate else "occlusion map"
        self.captions["occlusion"].value = _caption(caption)

    def _occlusion_shown(self, mode: str) -> bool:
        return self._occ_shown == (self.session._occlusion_key(mode), mode)

    def _schedule_refine(self) -> None:
        """After the fast map is shown, refine it to the exact one once the user has left the
        controls alone for :attr:`refine_delay` seconds."""
        if self._refine_timer is not None:
            self._refine_timer.cancel()
            self._refine_timer = None
        if self.refine_delay is None or not self._occlusion_shown("fast"):
            return
        self._refine_timer = threading.Timer(self.refine_delay, self._refine_if_idle,
                                             args=(self._actions,))
        self._refine_timer.daemon = True
        self._refine_timer.start()

    def _refine_if_idle(self, actions: int) -> None:
        with self._lock:
            if actions == self._actions and self._occlusion_shown("fast"):
                self._act("exact occlusion map", lambda: self._occlusion_change("exact", False),
                          set())

    def _occlusion_change(self, mode: str, progress: bool) -> None:
        s = self.session
        with self.occ_progress:
            panel, caption = s.occlusion_panel(progress=progress, mode=mode)
        self.occ_progress.clear_output()
        self._show_occlusion(draw.png_bytes(panel), caption, (s._occlusion_key(mode), mode))

    def _sync_controls(self) -> None:
        """Make the controls show the session's state (without firing their callbacks)."""
        s, st = self.session, self.session.state
        self._syncing = True
        try:
            self.layer_tb.value = st.layer
            self.unit_box.max = s.n_units() - 1
            self.unit_box.value = st.unit
            self.rule_tb.value = st.rule
            self.source_tb.value = st.source
            self.index_box.value = st.index
            self.sample_dd.value = st.sample
            self.prev_btn.disabled = st.page == 0
            self.next_btn.disabled = st.page >= s.n_pages() - 1
        finally:
            self._syncing = False

    # ------------------------------------------------------------------ callbacks
    def _cell_handler(self, k: int):
        def handler(_button):
            self._act(f"select map {self.session.geometry().first + k}",
                      lambda: self.session.select_cell(k), UNIT_PARTS)
        return handler

    def _on_layer(self, change) -> None:
        if not self._syncing:
            self._act(f"show {change['new']}", lambda: self.session.select_layer(change["new"]),
                      UNIT_PARTS)

    def _on_unit(self, change) -> None:
        if not self._syncing:
            self._act(f"select map {change['new']}", lambda: self.session.select_unit(change["new"]),
                      UNIT_PARTS)

    def _on_strongest(self, _button) -> None:
        self._act("select the strongest map",
                  lambda: self.session.select_unit(self.session.strongest_unit()), UNIT_PARTS)

    def _on_page(self, step: int) -> None:
        self._act("turn the page", lambda: self.session.select_page(self.session.state.page + step),
                  {"grid"})

    def _on_rule(self, change) -> None:
        if not self._syncing:
            self._act(f"{change['new']} rule", lambda: self.session.select_rule(change["new"]),
                      {"projection", "top9"})

    def _on_source(self, change) -> None:
        if self._syncing:
            return
        s = self.session
        if change["new"] == "dataset":
            self._act("data set image", lambda: s.select_dataset_image(self.index_box.value), IMAGE_PARTS)
        elif change["new"] == "sample":
            self._act("sample photo", lambda: s.select_sample(self.sample_dd.value), IMAGE_PARTS)
        elif self.upload_w.value:
            self._on_upload({"new": self.upload_w.value})
        else:
            self.status.value = ("<span style='color:#666'>choose a photo with the upload button "
                                 "to explore it</span>")

    def _on_index(self, change) -> None:
        if not self._syncing:
            self._act(f"image {change['new']}", lambda: self.session.select_dataset_image(change["new"]),
                      IMAGE_PARTS)

    def _on_sample(self, change) -> None:
        if not self._syncing:
            self._act(f"photo {change['new']}", lambda: self.session.select_sample(change["new"]),
                      IMAGE_PARTS)

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        f = files[0] if isinstance(files, (tuple, list)) else next(iter(files.values()))
        self._act(f"upload {f['name']}", lambda: self.session.upload(f["name"], f["content"]),
                  IMAGE_PARTS)

    def _on_occlusion_size(self, change) -> None:
        if not self._syncing:
            self._act(f"{change['new']} px square",
                      lambda: self.session.select_occlusion_size(change["new"]), {"occlusion"})

    def _on_occlusion(self, _button=None) -> None:
        """Show the occlusion map of the current image: the fast (approximate) one first, the
        exact one on a second press or once the controls are left alone (behind a progress bar)."""
        refine = self._occlusion_shown("fast")

        def change():
            self.session.select_occlusion_size(self.occ_size_dd.value)
            self._occlusion_change("exact" if refine else self.session.occlusion_mode(), True)
        self.occ_btn.disabled = True
        try:
            self._act("exact occlusion map" if refine else "occlusion map", change, set())
        finally:
            self.occ_btn.disabled = False

    def _on_model(self, change) -> None:
        if self._syncing:
            return
        profile, arch = self.profile_dd.value, self.arch_dd.value
        self.status.value = (f"<span style='color:#666'>\u23f3 loading the {arch} network of "
                             f"profile {profile} (trained and cached on first use: this can take "
                             f"minutes) ...</span>")
        try:
            with self.model_progress:
                new = self._factory(profile, arch)
            self.model_progress.clear_output()
        except Exception as e:  # training or data problems: show them, keep the old model
            self.status.value = f"<span style='color:#b00020'>\u26a0 {_escape(str(e))}</span>"
            self._syncing = True
            self.profile_dd.value, self.arch_dd.value = self.session.profile.name, self._arch
            self._syncing = False
            return
        self._replace_session(new, arch)

    def _replace_session(self, session: ExplorerSession, arch: str) -> None:
        old = self.session
        self.session, self._arch = session, arch
        self._syncing = True
        try:
            self.layer_tb.options = [(k.replace("layer", ""), k) for k in session.layers]
            self.index_box.max = max(0, len(session.dataset) - 1)
            sizes = session.occlusion_sizes()
            self.occ_size_dd.options = [(f"{n} px", n) for n in sizes]
            self.occ_size_dd.value = min(sizes, key=lambda n: abs(n - session.state.occlusion_size))
        finally:
            self._syncing = False
        keep = old.state

        def change():
            session.prepare()
            if keep.source == "sample":
                session.select_sample(keep.sample)
            session.select_layer(keep.layer if keep.layer in session.layers else session.layers[0])
        self._act(f"{session.profile.name} model", change, ALL_PARTS)


class _torch_threads:
    """``with _torch_threads(1):`` runs torch with one intra-op thread, then restores the count."""

    def __init__(self, n: int | None):
        self.n, self.before = n, None

    def __enter__(self):
        if self.n is not None:
            self.before = torch.get_num_threads()
            if self.before != self.n:
                torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.before is not None and self.before != self.n:
            torch.set_num_threads(self.before)
        return False


UNIT_PARTS = frozenset({"grid", "map", "projection", "top9"})
IMAGE_PARTS = frozenset({"image", "grid", "map", "projection", "occlusion"})
ALL_PARTS = UNIT_PARTS | IMAGE_PARTS


def _escape(text: str) -> str:
    import html
    return html.escape(text, quote=False)


def _caption(text: str) -> str:
    return f"<div style='line-height:1.35;font-size:12px;color:#333'>{_escape(text)}</div>"


def _prediction_html(pred: list[tuple[str, float]]) -> str:
    cell = "style='padding:0 6px;line-height:1.3'"
    rows = "".join(f"<tr><td {cell}>{_escape(n)}</td><td {cell} align='right'>{100 * p:.1f}%</td></tr>"
                   for n, p in pred)
    return (f"<table style='font-size:12px;border-collapse:collapse'><tr><th {cell} align='left'>"
            f"predicted</th><th></th></tr>{rows}</table>")


def scripted_tour(app: "Explorer", steps: int = 40, seed: int = 0, restore: bool = True) -> Timings:
    """Drive ``app`` like a user, through its widgets' own callbacks: ``steps`` actions drawn
    (deterministically from ``seed``) from choosing a layer, clicking a cell of the activation
    grid, asking for the strongest map, switching the projection rule, and choosing another data
    set image or sample photo. Returns the :class:`Timings` of those steps, named by kind
    (``layer``, ``cell``, ``strongest``, ``rule``, ``image``; each from the widget event to the
    last panel redrawn), with the state after each. With ``restore`` the app returns to the state
    it started from. The explorer benchmark and notebook 12 use it."""
    rng = np.random.default_rng(seed)
    s = app.session
    kinds = ("layer", "cell", "cell", "strongest", "rule", "image")
    out = Timings()
    before = s.state
    for i in range(steps):
        start = len(app.timings.records)
        kind = kinds[i % len(kinds)] if i < len(kinds) else kinds[int(rng.integers(len(kinds)))]
        if kind == "layer":
            others = [l for l in s.layers if l != s.state.layer]
            app.layer_tb.value = others[int(rng.integers(len(others)))]
        elif kind == "cell":
            count = s.geometry().count
            k = int(rng.integers(count))
            if s.geometry().first + k == s.state.unit:
                k = (k + 1) % count
            app.grid_buttons[k].click()
        elif kind == "strongest":
            app.strongest_btn.click()
        elif kind == "rule":
            app.rule_tb.value = RULES[(RULES.index(s.state.rule) + 1) % len(RULES)]
        elif rng.random() < 0.75 or not s.sample_names():
            if s.state.source != "dataset":
                app.source_tb.value = "dataset"
            app.index_box.value = int((s.state.index + 1 + rng.integers(len(s.dataset) - 1))
                                      % len(s.dataset))
        else:
            names = [n for n in s.sample_names() if n != s.state.sample]
            app.source_tb.value = "sample"
            app.sample_dd.value = names[int(rng.integers(len(names)))]
        done = app.timings.records[start:]
        if done:    # one gesture may fire two callbacks (source, then image): one step
            out.add(kind, sum(t for _, t in done))
            out.states.append(s.state)
    if restore:
        app.show_state(before)
    return out


def object_focus(session: ExplorerSession, indices: Sequence[int], layer: str = "layer5") -> dict:
    """For data set images ``indices``: project the strongest map of ``layer`` (the explorer's
    "strongest map" button) and measure how much of the projection lies on the object.

    Returns ``{"energy_share": (N,), "area_share": (N,), "units": (N,)}`` (numpy arrays); the
    session's state is restored afterwards. Section 4.2's reading of Figs. 2 and 7 is that the
    strong layer-5 features are about the object, not the background: ``energy_share`` clearly
    above ``area_share``; measure an untrained network too for the share that contrast alone
    gives.
    """
    before = session.state
    energy, area, units = [], [], []
    try:
        with session.computing():
            for i in indices:
                session.select_dataset_image(int(i))
                session.select_layer(layer)
                session.select_unit(session.strongest_unit())
                focus = session.projection_on_object()
                if focus is None:
                    continue
                energy.append(focus[0])
                area.append(focus[1])
                units.append(session.state.unit)
    finally:
        session.state = before
    return {"energy_share": np.array(energy), "area_share": np.array(area), "units": np.array(units)}
