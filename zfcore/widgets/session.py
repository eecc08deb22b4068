"""The explorer's headless session (notebook 12): its state and every panel, without widgets.

:class:`ExplorerSession` holds what the user has chosen
(:class:`~zfcore.widgets.state.ExplorerState`) and computes each panel of the explorer as an
``(H, W, 3)`` ``uint8`` array:

* the **activation grid** of the layer for the current image (one colour scale for the layer) and
  the **selected map** itself;
* the **projection** of the map's strongest activation to pixels with the chosen rule: the paper's
  deconvnet (section 2.1, Fig. 1), guided backpropagation or the plain gradient
  (:func:`zfcore.deconv.project`);
* the map's **top-9** activations over the validation set, projected and beside their image
  patches (Fig. 2; :func:`zfcore.mining.mine_dataset`, mined once per model and cached);
* the **occlusion map** of the current image (section 4.2, Fig. 7;
  :func:`zfcore.occlusion.occlude`), the fast approximation first and the exact map on request.

What is expensive is cached in small least-recently-used caches (one forward pass per image for all
layers, projections per (image, layer, map, rule), the top-9 per (layer, map, rule), occlusion maps
per view). The model is run in eval mode and given back in the mode the caller left it in. The
ipywidgets view (:mod:`zfcore.widgets.view`) only draws these panels and wires its controls to the
``select_*`` methods; tests and scripts use the session alone.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data import class_names as data_class_names
from ..data import denormalize, get_dataset, normalize
from ..data.images import SAMPLE_PHOTOS, ImageLoadError, load_image, sample_photos
from ..deconv import layer_activations, project, requests
from ..focus import focus_on_box
from ..mining import DEFAULT_LAYERS, mine_dataset, top_requests
from ..models import ModelTypeError, eval_mode, hidden_layers, layer_key
from ..occlusion import occlude
from ..plotting import explorer as draw
from ..profiles import Profile, get_profile
from ..receptive import receptive_field
from ..train import trained_model
from .state import RULES, ExplorerError, ExplorerState, LRUCache, torch_threads

__all__ = ["ExplorerSession"]


class ExplorerSession:
    """The explorer's state and panels, without widgets.

    ``model`` is any network of :mod:`zfcore.models` (with ``layer_names``) taking
    ``profile.image_size`` inputs; ``dataset`` defaults to ``get_dataset(profile, split)``.
    Every ``select_*`` method validates its argument (raising :class:`ExplorerError` naming the
    allowed values) and returns the new :class:`ExplorerState`; the panel methods return
    ``(H, W, 3)`` ``uint8`` arrays for the current state. ``mined`` passes results of
    :meth:`mined` from another session of the same model (``{layer: TopK}``) to reuse.
    ``threads`` is the torch thread count for the explorer's work (:meth:`computing`): one, since
    the work is mostly one image at a time, which one thread does fastest and which more threads
    slow down on a busy machine (``benchmarks/explorer.py`` measures it). ``None`` leaves torch's
    setting alone.
    Every computation runs the model in eval mode and gives each module back the mode the caller
    left it in (the session never changes the caller's model).

    >>> s = ExplorerSession(trained_model("mini"), "mini")          # doctest: +SKIP
    >>> s.select_layer("layer5"); s.select_unit(s.strongest_unit())  # doctest: +SKIP
    >>> s.projection_panel()                                         # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        profile: "str | Profile" = "mini",
        *,
        dataset=None,
        split: str = "val",
        class_names: Sequence[str] | None = None,
        page_size: int = 192,
        cols: int = 16,
        cell: int = 30,
        panel: int = 224,
        top_k: int = 9,
        mine_images: int | None = None,
        mined: dict | None = None,
        threads: int | None = 1,
    ):
        if not isinstance(model, nn.Module):
            raise ModelTypeError(
                f"model must be a torch.nn.Module, got {type(model).__name__}: pass the network "
                f"itself (e.g. zfcore.zoo.model_for_profile)"
            )
        self.model = model  # left in the caller's mode: see _evaluated
        self.profile = get_profile(profile)
        size = getattr(model, "input_size", None)
        if size is not None and size != self.profile.image_size:
            raise ExplorerError(
                f"the model takes {size}px inputs but profile "
                f"{self.profile.name!r} makes {self.profile.image_size}px images: "
                f"pass the profile the model was built for"
            )
        for name, v in (
            ("page_size", page_size),
            ("cols", cols),
            ("cell", cell),
            ("panel", panel),
            ("top_k", top_k),
        ):
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
        self.state = ExplorerState(
            layer=self.layers[0], occlusion_size=self.default_occlusion_size()
        )
        self._uploads: dict[str, torch.Tensor] = {}
        self._images = LRUCache(16)  # image key -> (3, S, S) in [0, 1] and its label
        self._acts = LRUCache(8)  # image key -> {layer: activations}
        self._grids = LRUCache(32)  # (image key, layer, page) -> grid without highlight
        self._projections = LRUCache(256)  # (image key, layer, unit, rule) -> (3, S, S)
        self._top = LRUCache(64)  # (layer, unit, rule) -> top-k patches and projections
        self._mined: dict[str, Any] = dict(mined or {})  # layer -> mining result (TopK)
        self._occlusions = LRUCache(16)  # (image key, layer, unit, size) -> occlusion result

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def for_profile(
        cls, profile: "str | Profile" = "mini", arch: str = "zfnet", **kwargs
    ) -> "ExplorerSession":
        """A session on the profile's trained network (:func:`zfcore.train.trained_model`, cached;
        trained on first use)."""
        return cls(trained_model(profile, arch=arch), profile, **kwargs)

    @property
    def dataset(self):
        if self._dataset is None:
            self._dataset = get_dataset(self.profile, self.split)
        return self._dataset

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            n = self.n_units("logits")
            try:
                names = list(data_class_names(self.profile))
            except Exception:
                names = []
            self._class_names = names if len(names) == n else [f"class {i}" for i in range(n)]
        return self._class_names

    def sample_names(self) -> list[str]:
        return list(SAMPLE_PHOTOS)

    def default_occlusion_size(self) -> int:
        """A square about a sixth of the image side: the size of an object part in the scenes."""
        return max(4, self.profile.image_size // 6)

    def occlusion_sizes(self) -> list[int]:
        s = self.profile.image_size
        return sorted({max(4, s // d) for d in (12, 8, 6, 4)})

    def computing(self) -> torch_threads:
        """``with session.computing():`` runs torch with :attr:`threads` threads, then restores."""
        return torch_threads(self.threads)

    def _evaluated(self, run: Callable[[], Any]) -> Any:
        """``run()`` with the model in eval mode (dropout off, so every panel is deterministic),
        every module given back the mode the caller left it in: the session never changes the
        caller's model."""
        with eval_mode(self.model):
            return run()

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
            raise ExplorerError(
                f"feature map {unit!r} does not exist: {self.state.layer} has maps 0 to {n - 1}"
            )
        return self._set(unit=int(unit), page=int(unit) // self.page_size)

    def select_page(self, page: int) -> ExplorerState:
        pages = self.n_pages()
        if not isinstance(page, (int, np.integer)) or not 0 <= page < pages:
            raise ExplorerError(
                f"page {page!r} does not exist: {self.state.layer} has {pages} page(s)"
            )
        return self._set(page=int(page))

    def select_cell(self, k: int) -> ExplorerState:
        """Select the map in cell ``k`` of the grid's current page (what a click does)."""
        g = self.geometry()
        if not 0 <= k < g.count:
            raise ExplorerError(f"cell {k} is empty: this page holds {g.count} maps")
        return self.select_unit(g.first + k)

    def select_rule(self, rule: str) -> ExplorerState:
        if rule not in RULES:
            raise ExplorerError(
                f"unknown projection rule {rule!r}: choose one of {', '.join(RULES)}"
            )
        return self._set(rule=rule)

    def select_dataset_image(self, index: int) -> ExplorerState:
        n = len(self.dataset)
        if (
            isinstance(index, bool)
            or not isinstance(index, (int, np.integer))
            or not 0 <= index < n
        ):
            raise ExplorerError(
                f"image index {index!r} is out of range: the {self.split} split has "
                f"images 0 to {n - 1}"
            )
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
            raise ExplorerError(
                f"occlusion square of {size!r} pixels: choose 1 to {s} "
                f"(the image side), e.g. {self.default_occlusion_size()}"
            )
        return self._set(occlusion_size=int(size))

    # -------------------------------------------------------------- the image and its activations
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
            x, y = ds[st.index]
            return denormalize(x[None], self.profile)[0].clamp(0, 1), int(y), None
        if st.source == "sample":
            return sample_photos(self.profile, [st.sample], normalized=False).images[0], None, None
        return self._uploads[st.upload], None, None

    def model_input(self) -> torch.Tensor:
        """The current image normalised for the network, ``(1, 3, S, S)``."""
        return normalize(self.image()[0][None], self.profile)

    def activations(self) -> dict[str, torch.Tensor]:
        """``{layer: (C, H, W) or (C,)}`` and ``"logits"`` for the current image, from one forward
        pass (cached per image)."""

        def run():
            out = layer_activations(self.model, self.model_input(), self.layers + ["logits"])
            return {k: v[0].detach() for k, v in out.items()}

        return self._acts.get_or(self.state.image_key, lambda: self._evaluated(run))

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
        return draw.grid_geometry(
            self.n_units(), self.state.page, self.page_size, self.cols, self.cell
        )

    def image_panel(self) -> np.ndarray:
        return draw.upscale(draw.image_rgb(self.image()[0]), self.panel)

    def grid_panel(self) -> np.ndarray:
        """The current page of the activation grid with the selected map framed."""
        st = self.state
        g = self.geometry()
        base = self._grids.get_or(
            (st.image_key, st.layer, st.page),
            lambda: draw.activation_grid(self.activations()[st.layer], g),
        )
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
        st = self.state

        def run():
            pos = self.strongest_position()
            req = requests(0, st.unit) if pos is None else requests(0, st.unit, *pos)
            return project(self.model, self.model_input(), st.layer, req, rule=st.rule).pixels[0]

        return self._projections.get_or(
            (st.image_key, st.layer, st.unit, st.rule), lambda: self._evaluated(run)
        )

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
        return None if box is None else focus_on_box(self.projection(), box)

    # ------------------------------------------------------------------ top-9 and occlusion
    def mined(self, layer: str | None = None):
        """The top-k of every map of ``layer`` over the validation images
        (:func:`zfcore.mining.mine_dataset`: one streaming pass, cached on disk by the model's
        weights). Layers 1-5 are mined together (the same cache entry as notebook 03), layers 6
        and 7 together."""
        layer = layer or self.state.layer
        if layer not in self._mined:
            conv = [l for l in self.layers if l in DEFAULT_LAYERS]
            group = conv if layer in conv else [l for l in self.layers if l not in conv]
            result = self._evaluated(
                lambda: mine_dataset(
                    self.model,
                    self.profile,
                    self.split,
                    k=self.top_k,
                    layers=group,
                    n_images=self.mine_images,
                )
            )
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
                images01 = denormalize(
                    torch.stack([ds[int(i)][0] for i in ids]), self.profile
                ).clamp(0, 1)
            fc = self.activations()[st.layer].dim() == 1
            if fc:  # a unit of layer 6 or 7 has no position: project the unit itself
                req = requests(req.image, req.channel)
            pixels = project(
                self.model, normalize(images01, self.profile), st.layer, req, rule=st.rule
            ).pixels
            rf = receptive_field(self.model, st.layer)
            patches, projections = [], []
            for r in range(len(req)):
                # the part of the activation's receptive field inside its image (Fig. 2's patch)
                y, x = max(0, int(req.y[r])), max(0, int(req.x[r]))
                box = rf.box(y, x, self.profile.image_size)
                patches.append(draw.crop_square(images01[int(req.image[r])], box, fill=0.5))
                projections.append(draw.crop_square(pixels[r], box, fill=0.0))
            k = len(req)
            return {
                "patches": patches,
                "projections": projections,
                "values": lt.values[st.unit, :k].clone(),
                "images": lt.images[st.unit, :k].clone(),
                "labels": lt.labels[st.unit, :k].clone(),
                "n_images": result.n_images,
            }

        return self._top.get_or((st.layer, st.unit, st.rule), lambda: self._evaluated(run))

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
            common = (
                f"; {labels.count(top_label)} of {len(labels)} are "
                f"{self.class_names[top_label] if top_label < len(self.class_names) else top_label}"
            )
        v = t["values"]
        caption = (
            f"{self.state.layer} map {self.state.unit}: its {len(v)} strongest activations "
            f"over {t['n_images']} {self.split} images ({float(v.min()):.3g} to "
            f"{float(v.max()):.3g}){common}"
        )
        return proj, patches, caption

    def occlusion_stride(self, window: int) -> int:
        """Step between square positions: about 24 positions per axis, whatever the image size."""
        return max(1, (self.profile.image_size - window) // 23)

    def occlusion(self, progress: bool = False, mode: str = "exact"):
        """The occlusion maps of the current image (section 4.2, Fig. 7) for the selected map and
        square size: :func:`zfcore.occlusion.occlude` with the true class as target (the network's
        own prediction for photos). ``mode`` is ``"exact"`` or ``"fast"`` (each layer's change in
        bfloat16, :data:`zfcore.occlusion.PRESETS`). Cached per (image, layer, map, square, mode);
        a fast result that came out exact (no native bfloat16 here) is cached as exact too."""
        st = self.state
        window = st.occlusion_size

        def run():
            return occlude(
                self.model,
                self.model_input(),
                self.image()[1],
                window=window,
                stride=self.occlusion_stride(window),
                layer=st.layer,
                feature=st.unit,
                progress=progress,
                mode=mode,
            )

        result = self._occlusions.get_or(self._occlusion_key(mode), lambda: self._evaluated(run))
        if mode != "exact" and result.exact:
            self._occlusions.get_or(self._occlusion_key("exact"), lambda: result)
        return result

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

    def occlusion_panel(
        self, progress: bool = False, mode: "str | None" = None
    ) -> tuple[np.ndarray, str]:
        """Two maps over the image, dark where covering that spot with the grey square lowers the
        value: the selected map's total activity (Fig. 7b; from its lowest to its highest value)
        and p(correct class) (Fig. 7d; on the absolute scale 0 to 1). ``mode`` defaults to
        :meth:`occlusion_mode` (fast first, exact once refined); the caption says which it shows."""
        mode = self.occlusion_mode() if mode is None else mode
        r = self.occlusion(progress, mode)
        image = self.image()[0]
        activity = draw.overlay_heatmap(image, r.feature_total, cmap="magma")
        prob = draw.overlay_heatmap(image, r.prob_target, cmap="magma", vmin=0.0, vmax=1.0)
        panel = draw.tile(
            [draw.upscale(activity, self.panel), draw.upscale(prob, self.panel)], cols=2
        )
        x, y = r.most_damaging()
        name = self.class_names[r.target] if r.target < len(self.class_names) else str(r.target)
        shown = "exact" if r.exact else f"approximate ({r.approximation_note()}; exact follows)"
        caption = (
            f"{shown}. left: {r.layer} map {r.feature} activity ({r.feature_total_clean:.3g} "
            f"uncovered, down to {float(r.feature_total.min()):.3g}); right: p({name}) "
            f"({r.prob_target_clean:.2f} uncovered, down to {float(r.prob_target.min()):.2f} "
            f"with the {r.window} px square at x={x:.0f}, y={y:.0f})"
        )
        return panel, caption

    def snapshot_panels(self, occlusion: bool = True) -> dict[str, np.ndarray]:
        """Every panel of the current state, titled (for
        :func:`zfcore.plotting.explorer.snapshot_figure`)."""
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
            panels[
                f"occlusion ({st.occlusion_size} px square): map {st.unit} activity | p(class)"
            ] = panel
        return panels

    # ------------------------------------------------------------------ panel captions
    def captions(self) -> dict[str, str]:
        """One line under each panel, saying what it shows (numbers included)."""
        st = self.state
        acts = self.activations()[st.layer]
        a = acts[st.unit]
        label = self.image()[1]
        truth = f", true class {self.class_names[label]}" if label is not None else ""
        source = {
            "dataset": f"{self.split} image {st.index}",
            "sample": f"sample photo '{st.sample}'",
            "upload": f"your file '{st.upload.split('#')[0]}'",
        }[st.source]
        g = self.geometry()
        pos = self.strongest_position()
        where = f" at (y={pos[0]}, x={pos[1]})" if pos else ""
        focus = self.projection_on_object()
        if focus is not None:
            where += (
                f"; {100 * focus[0]:.0f}% of it on the object ({100 * focus[1]:.0f}% of the image)"
            )
        return {
            "image": f"{source}{truth}",
            "grid": (
                f"{st.layer}: maps {g.first}-{g.first + g.count - 1} of {acts.shape[0]}"
                f" (page {st.page + 1}/{self.n_pages()}); click a cell to select its map"
            ),
            "map": (
                f"{st.layer} map {st.unit}: max {float(a.max()):.3g} "
                f"(layer max {float(acts.max()):.3g})"
            ),
            "projection": f"{st.rule} projection of map {st.unit}'s strongest activation{where}",
        }
