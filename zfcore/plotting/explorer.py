"""Drawing for the explorer (notebook 12, :mod:`zfcore.widgets`): fast panels and a snapshot figure.

An interactive redraw has to finish in well under half a second, so the explorer's panels are
drawn with numpy and Pillow, not matplotlib: each function here takes tensors the explorer
computed and returns an ``(H, W, 3)`` ``uint8`` array; :func:`png_bytes` encodes one for an
``ipywidgets.Image``. :func:`snapshot_figure` draws the same panels as one matplotlib figure for
the notebook's saved figure and the static site.

Display conventions follow the paper: feature maps are shown with one colour scale for the whole
layer (so weak maps look weak, as in the DeepVis toolbox), and a deconvnet projection is shown
contrast-normalised around grey (section 2.1, Fig. 2: zero is mid-grey, the sign is kept).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from ..errors import ZFCoreError

__all__ = [
    "DrawError",
    "GridGeometry",
    "grid_geometry",
    "colorize",
    "upscale",
    "crop_square",
    "activation_grid",
    "highlight_cell",
    "projection_rgb",
    "image_rgb",
    "overlay_heatmap",
    "tile",
    "png_bytes",
    "snapshot_figure",
    "focus_figure",
]


class DrawError(ZFCoreError, ValueError):
    """Panel inputs the explorer cannot draw (no feature maps, a page that does not exist,
    activations of the wrong shape, no image to tile)."""


#: The highlight drawn around the selected feature map (and the occluder square).
HIGHLIGHT = (255, 64, 32)


@dataclass(frozen=True)
class GridGeometry:
    """Where the feature maps of one page of the activation grid are drawn.

    Cell ``k`` (map ``first + k``) is at row ``k // cols``, column ``k % cols``; every cell is
    ``cell`` pixels square, so a click at ``(x, y)`` is map
    ``first + (y // cell) * cols + x // cell``.
    """

    first: int
    count: int
    cols: int
    cell: int

    @property
    def rows(self) -> int:
        return max(1, math.ceil(self.count / self.cols))

    @property
    def width(self) -> int:
        return self.cols * self.cell

    @property
    def height(self) -> int:
        return self.rows * self.cell

    def cell_at(self, x: int, y: int) -> int | None:
        """The map under pixel ``(x, y)`` of the page image, or ``None`` outside every cell."""
        if not (0 <= x < self.width and 0 <= y < self.height):
            return None
        k = (y // self.cell) * self.cols + x // self.cell
        return self.first + k if k < self.count else None


def grid_geometry(n_maps: int, page: int, page_size: int, cols: int, cell: int) -> GridGeometry:
    """The :class:`GridGeometry` of page ``page`` when ``n_maps`` maps are shown ``page_size`` at
    a time."""
    if n_maps < 1:
        raise DrawError(f"a layer has at least one feature map, got n_maps={n_maps}")
    pages = math.ceil(n_maps / page_size)
    if not 0 <= page < pages:
        raise DrawError(
            f"page {page} does not exist: {n_maps} maps make {pages} page(s) of {page_size}"
        )
    first = page * page_size
    return GridGeometry(first, min(page_size, n_maps - first), min(cols, page_size), cell)


def _lut(cmap: str) -> np.ndarray:
    return (matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


_LUTS: dict[str, np.ndarray] = {}


def colorize(
    values: "torch.Tensor | np.ndarray",
    vmax: float | None = None,
    cmap: str = "viridis",
    vmin: float = 0.0,
) -> np.ndarray:
    """Map values to colours: ``vmin`` (rectified maps: 0) -> the colormap's start, ``vmax`` -> its
    end. Returns ``values.shape + (3,)`` ``uint8``. ``vmax=None`` uses the values' maximum."""
    v = (
        values.detach().cpu().float().numpy()
        if isinstance(values, torch.Tensor)
        else np.asarray(values, np.float32)
    )
    hi = float(v.max()) if vmax is None else float(vmax)
    scale = 255.0 / (hi - vmin) if hi > vmin else 0.0
    idx = np.clip((v - vmin) * scale, 0, 255).astype(np.uint8)
    if cmap not in _LUTS:
        _LUTS[cmap] = _lut(cmap)
    return _LUTS[cmap][idx]


def upscale(rgb: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    """Nearest-neighbour resize of an ``(h, w, 3)`` array to ``(height, width, 3)`` (``width``
    defaults to ``height``): feature maps stay crisp instead of blurred."""
    width = height if width is None else width
    h, w = rgb.shape[:2]
    ys = (np.arange(height) * h // height).clip(0, h - 1)
    xs = (np.arange(width) * w // width).clip(0, w - 1)
    return rgb[ys][:, xs]


def activation_grid(
    acts: torch.Tensor,
    geometry: GridGeometry,
    vmax: float | None = None,
    cmap: str = "viridis",
    gap: int = 1,
) -> np.ndarray:
    """One page of a layer's feature maps, each in its cell, on one colour scale.

    ``acts`` is ``(C, H, W)`` (a convolutional layer) or ``(C,)`` (a fully connected layer: each
    unit fills its cell with its value's colour). ``vmax`` defaults to the layer's maximum over all
    maps, so the brightest cell is the most active map of the layer, as in the DeepVis toolbox.
    """
    g = geometry
    if acts.dim() == 1:
        acts = acts[:, None, None]
    if acts.dim() != 3:
        raise DrawError(f"acts must be (C, H, W) or (C,), got shape {tuple(acts.shape)}")
    if g.first + g.count > acts.shape[0]:
        raise DrawError(
            f"the page shows maps {g.first}..{g.first + g.count - 1} but the layer has "
            f"{acts.shape[0]}"
        )
    vmax = float(acts.max()) if vmax is None else vmax
    inner = g.cell - 2 * gap
    page = acts[g.first : g.first + g.count].detach().float()
    h, w = page.shape[-2:]
    ys = (torch.arange(inner) * h // inner).clamp(max=h - 1)
    xs = (torch.arange(inner) * w // inner).clamp(max=w - 1)
    cells = colorize(page[:, ys][:, :, xs], vmax, cmap)  # (count, inner, inner, 3)
    out = np.full((g.height, g.width, 3), 40, np.uint8)
    for k in range(g.count):
        r, c = divmod(k, g.cols)
        y0, x0 = r * g.cell + gap, c * g.cell + gap
        out[y0 : y0 + inner, x0 : x0 + inner] = cells[k]
    return out


def highlight_cell(
    grid: np.ndarray, geometry: GridGeometry, unit: int, width: int = 2, color=HIGHLIGHT
) -> np.ndarray:
    """A copy of ``grid`` with a frame around map ``unit`` (nothing if it is not on this page)."""
    out = grid.copy()
    k = unit - geometry.first
    if 0 <= k < geometry.count:
        r, c = divmod(k, geometry.cols)
        y0, x0, s = r * geometry.cell, c * geometry.cell, geometry.cell
        out[y0 : y0 + width, x0 : x0 + s] = color
        out[y0 + s - width : y0 + s, x0 : x0 + s] = color
        out[y0 : y0 + s, x0 : x0 + width] = color
        out[y0 : y0 + s, x0 + s - width : x0 + s] = color
    return out


def projection_rgb(pixels: torch.Tensor) -> np.ndarray:
    """A pixel-space projection ``(3, H, W)`` for display: zero is grey, scaled by its largest
    absolute value (the sign is kept, as in the paper's Fig. 2)."""
    p = pixels.detach().float()
    m = float(p.abs().max())
    p = 0.5 + 0.5 * p / m if m > 0 else torch.full_like(p, 0.5)
    return (p.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def image_rgb(image01: torch.Tensor) -> np.ndarray:
    """A ``(3, H, W)`` image in [0, 1] as ``(H, W, 3)`` ``uint8``."""
    return (
        (image01.detach().float().clamp(0, 1).permute(1, 2, 0).numpy() * 255)
        .round()
        .astype(np.uint8)
    )


def overlay_heatmap(
    image01: torch.Tensor,
    heat: torch.Tensor,
    alpha: float = 0.6,
    cmap: str = "magma",
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """``heat`` (any ``(h, w)`` grid, e.g. an occlusion map) stretched over the image and
    blended."""
    img = image_rgb(image01)
    h = heat.detach().float()
    lo = float(h.min()) if vmin is None else vmin
    colored = colorize(h, float(h.max()) if vmax is None else vmax, cmap, vmin=lo)
    colored = upscale(colored, img.shape[0], img.shape[1])
    return (alpha * colored + (1 - alpha) * img).round().astype(np.uint8)


def tile(
    images: "list[np.ndarray]",
    cols: int = 3,
    pad: int = 2,
    size: int | None = None,
    fill: int = 255,
) -> np.ndarray:
    """Images (``(h, w, 3)`` uint8, upscaled to ``size`` if given) in a grid, ``cols`` per row:
    the 3x3 layout of the paper's top-9 panels (Fig. 2)."""
    if not images:
        raise DrawError("tile needs at least one image")
    if size is not None:
        images = [upscale(im, size) for im in images]
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    rows = math.ceil(len(images) / cols)
    out = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, 3), fill, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        out[
            r * (h + pad) : r * (h + pad) + im.shape[0], c * (w + pad) : c * (w + pad) + im.shape[1]
        ] = im
    return out


def crop_square(image: torch.Tensor, box: tuple[int, int, int, int], fill: float) -> torch.Tensor:
    """``image[:, y0:y1, x0:x1]`` centred in a square of side ``max(height, width)`` filled with
    ``fill``: a receptive field clipped at the image edge, without stretching it."""
    x0, y0, x1, y1 = box
    crop = image[:, y0:y1, x0:x1]
    h, w = crop.shape[-2:]
    side = max(h, w)
    out = image.new_full((image.shape[0], side, side), fill)
    top, left = (side - h) // 2, (side - w) // 2
    out[:, top : top + h, left : left + w] = crop
    return out


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG-encode an ``(H, W, 3)`` ``uint8`` array (fast: no compression search)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def snapshot_figure(panels: "dict[str, np.ndarray]", title: str = "", cols: int = 3):
    """The explorer's panels (name -> ``(H, W, 3)`` uint8) as one matplotlib figure, for the
    notebook's saved figure and readers of the static site."""
    names = list(panels)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        ax.imshow(panels[name], interpolation="nearest")
        ax.set_title(name, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def focus_figure(results: "dict[str, dict]", layer: str = "layer5"):
    """Per image: the share of the strongest map's projection that lies on the object against the
    object's share of the image (points above the diagonal: the feature is about the object), one
    colour per network. ``results`` maps a label to :func:`zfcore.focus.object_focus`'s output."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--", label="no preference (energy = area)")
    for (label, r), color in zip(results.items(), ("#1d4f91", "#bbbbbb", "#c0392b", "#2e7d32")):
        e, a = np.asarray(r["energy_share"]), np.asarray(r["area_share"])
        ax.scatter(
            a,
            e,
            s=26,
            color=color,
            alpha=0.85,
            label=f"{label}: mean {e.mean():.0%}" if e.size else label,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("object box: share of the image area")
    ax.set_ylabel("projection energy on the object")
    ax.set_title(f"strongest {layer} map per image", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
