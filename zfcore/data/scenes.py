"""Procedural scenes: the offline stand-in for ImageNet (CONTRIBUTING.md, "The procedural data
set").

Every class is an *arrangement* of parts drawn from one small vocabulary of primitives (discs,
rings, bars, triangles, stripes). The same primitives are scattered behind the object as clutter,
colours are drawn per part (never per class), and texture, lighting, position, scale, small
rotation and mirroring vary per image. So no single local feature, colour histogram or pixel
template names the class; only the spatial arrangement of parts does, and a network has to build
the hierarchy of features that Zeiler & Fergus visualise (sections 4 and 5).

The face class carries ground-truth keypoints ``left_eye``, ``right_eye`` and ``nose`` (the eye on
the viewer's left is ``left_eye``), used by Table 1's correspondence experiment (section 5.2),
which occludes the same part in every face image.

Everything is a pure function of ``(seed, group, split, index)``: each image draws its own block of
uniform numbers from ``numpy.random.default_rng([seed, group, split, index])`` (PCG64, whose
uniform stream is stable across machines and NumPy versions), so an image does not depend on which
batch it was rendered in (the generators of a batch are seeded in one vectorised pass that
reproduces NumPy's seeding, :func:`_uniform_block`). Rendering is batched with tensor operations:
each primitive becomes a coverage mask computed from coordinate grids on a small patch around it
(all primitives of one patch size and shape at once), and the covered pixels are blended for the
whole batch, slot by slot in painter's order (background, clutter, object parts).

The output is frozen for a given :data:`GENERATOR_VERSION` (models and caches are keyed by it):
``tests/test_data_scenes_frozen.py`` pins every bit of about a thousand scenes, so a faster
renderer must compute each pixel with the same float operations in the same order.

Geometry is defined in units of the image side, so the same index gives the same scene at any
``image_size``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ZFCoreError
from ..profiles import get_profile
from .transforms import crop_choices, normalize, paper_crops

__all__ = [
    "SceneError",
    "SceneIndexError",
    "SceneGeneratorError",
    "GENERATOR_VERSION",
    "SceneBatch",
    "MAIN_CLASSES",
    "TRANSFER_CLASSES",
    "GROUPS",
    "KEYPOINT_NAMES",
    "SHAPES",
    "render_scenes",
    "scene_labels",
    "SceneDataset",
    "transfer_split_sizes",
]

#: Bump whenever rendering changes: the trainer puts it in its cache key.
GENERATOR_VERSION = 2

DISC, RING, BAR, TRIANGLE, STRIPES = range(5)
#: The primitive vocabulary shared by every class and the clutter.
SHAPES = ("disc", "ring", "bar", "triangle", "stripes")
_RING_INNER = 0.55  # inner radius of a ring as a fraction of its outer radius

#: Ground-truth keypoints (NaN for images that have no such part).
KEYPOINT_NAMES = ("left_eye", "right_eye", "nose")


def _p(shape, x, y, sx, sy, angle=0.0, name=None):
    """One part in object coordinates: the object spans [-1, 1]^2, y points down."""
    return (shape, x, y, sx, sy, angle, name)


def _ring_of(shape, n, radius, size, cy=0.0, radial=False, sy=None):
    """``n`` parts evenly around a circle (petals, sun rays)."""
    parts = []
    for k in range(n):
        a = 2 * math.pi * k / n
        ang = math.degrees(a) + 90.0 if radial else 0.0
        parts.append(
            _p(
                shape,
                radius * math.cos(a),
                cy + radius * math.sin(a),
                size,
                size if sy is None else sy,
                ang,
            )
        )
    return parts


# Class templates. Each is a list of parts in drawing order (later parts on top).
_TEMPLATES: dict[str, list] = {
    # --- main group: the pretraining classes (ImageNet's role) ------------------------------
    "face": [
        _p(DISC, 0, 0, 0.80, 1.0),
        _p(DISC, -0.36, -0.22, 0.16, 0.16, name="left_eye"),
        _p(DISC, 0.36, -0.22, 0.16, 0.16, name="right_eye"),
        _p(TRIANGLE, 0, 0.16, 0.15, 0.19, name="nose"),
        _p(BAR, 0, 0.58, 0.34, 0.07),
    ],
    "car": [
        _p(BAR, 0, 0.05, 1.0, 0.30),
        _p(BAR, -0.1, -0.42, 0.50, 0.18),
        _p(RING, -0.55, 0.45, 0.28, 0.28),
        _p(RING, 0.55, 0.45, 0.28, 0.28),
    ],
    "house": [
        _p(BAR, 0, 0.35, 0.72, 0.60),
        _p(TRIANGLE, 0, -0.55, 0.95, 0.42),
        _p(BAR, 0.30, 0.62, 0.14, 0.33),
        _p(STRIPES, -0.35, 0.20, 0.18, 0.18),
    ],
    "flower": [_p(BAR, 0, 0.45, 0.06, 0.55)]
    + _ring_of(DISC, 6, 0.40, 0.20, cy=-0.30)
    + [_p(DISC, 0, -0.30, 0.20, 0.20)],
    "fish": [
        _p(TRIANGLE, 0.72, 0, 0.32, 0.30, -90),
        _p(DISC, -0.12, 0, 0.72, 0.45),
        _p(TRIANGLE, -0.10, -0.45, 0.25, 0.18),
        _p(DISC, -0.55, -0.10, 0.09, 0.09),
    ],
    "tree": [
        _p(BAR, 0, 0.72, 0.14, 0.30),
        _p(TRIANGLE, 0, 0.12, 0.75, 0.42),
        _p(TRIANGLE, 0, -0.50, 0.55, 0.38),
    ],
    "bicycle": [
        _p(RING, -0.58, 0.35, 0.40, 0.40),
        _p(RING, 0.58, 0.35, 0.40, 0.40),
        _p(BAR, 0, 0.10, 0.60, 0.05, -18),
        _p(BAR, -0.22, -0.18, 0.05, 0.32),
        _p(BAR, 0.45, -0.32, 0.22, 0.05),
    ],
    "clock": [
        _p(DISC, 0, 0, 1.0, 1.0),
        _p(RING, 0, 0, 1.0, 1.0),
        _p(BAR, 0, -0.30, 0.05, 0.32),
        _p(BAR, 0.26, 0, 0.27, 0.05),
        _p(DISC, 0, 0, 0.09, 0.09),
    ],
    "snowman": [
        _p(DISC, 0, 0.55, 0.45, 0.45),
        _p(DISC, 0, -0.05, 0.33, 0.33),
        _p(DISC, 0, -0.52, 0.24, 0.24),
        _p(BAR, 0, -0.80, 0.22, 0.05),
    ],
    "traffic_light": [
        _p(BAR, 0, 0, 0.40, 1.0),
        _p(DISC, 0, -0.60, 0.25, 0.25),
        _p(DISC, 0, 0, 0.25, 0.25),
        _p(DISC, 0, 0.60, 0.25, 0.25),
    ],
    # --- transfer group: held-out classes (the Caltech analogue of Tables 4-7) ---------------
    "butterfly": [
        _p(TRIANGLE, -0.50, -0.30, 0.40, 0.45, 90),
        _p(TRIANGLE, 0.50, -0.30, 0.40, 0.45, -90),
        _p(TRIANGLE, -0.40, 0.40, 0.28, 0.30, 90),
        _p(TRIANGLE, 0.40, 0.40, 0.28, 0.30, -90),
        _p(BAR, 0, 0, 0.08, 0.65),
    ],
    "rocket": [
        _p(BAR, 0, 0.10, 0.25, 0.70),
        _p(TRIANGLE, 0, -0.80, 0.25, 0.20),
        _p(TRIANGLE, -0.35, 0.65, 0.15, 0.25),
        _p(TRIANGLE, 0.35, 0.65, 0.15, 0.25),
        _p(DISC, 0, -0.10, 0.13, 0.13),
    ],
    "mushroom": [
        _p(BAR, 0, 0.45, 0.20, 0.45),
        _p(DISC, 0, -0.20, 0.90, 0.45),
        _p(DISC, -0.40, -0.30, 0.12, 0.12),
        _p(DISC, 0.35, -0.35, 0.10, 0.10),
    ],
    "umbrella": [
        _p(TRIANGLE, 0, -0.35, 1.0, 0.40),
        _p(BAR, 0, 0.35, 0.05, 0.55),
        _p(RING, 0.13, 0.88, 0.15, 0.15),
    ],
    "cup": [
        _p(RING, 0.62, 0.10, 0.30, 0.35),
        _p(BAR, 0, 0.10, 0.55, 0.65),
        _p(STRIPES, 0, -0.15, 0.50, 0.22),
    ],
    "sun": [_p(DISC, 0, 0, 0.45, 0.45)] + _ring_of(BAR, 8, 0.78, 0.05, radial=True, sy=0.20),
    "dumbbell": [
        _p(BAR, 0, 0, 0.60, 0.08),
        _p(DISC, -0.70, 0, 0.28, 0.28),
        _p(DISC, 0.70, 0, 0.28, 0.28),
    ],
    "ladder": [
        _p(STRIPES, 0, 0, 0.40, 0.90),
        _p(BAR, -0.42, 0, 0.07, 1.0),
        _p(BAR, 0.42, 0, 0.07, 1.0),
    ],
}

MAIN_CLASSES = (
    "face",
    "car",
    "house",
    "flower",
    "fish",
    "tree",
    "bicycle",
    "clock",
    "snowman",
    "traffic_light",
)
TRANSFER_CLASSES = (
    "butterfly",
    "rocket",
    "mushroom",
    "umbrella",
    "cup",
    "sun",
    "dumbbell",
    "ladder",
)
GROUPS = {"main": MAIN_CLASSES, "transfer": TRANSFER_CLASSES}
_GROUP_ID = {"main": 0, "transfer": 1}
_SPLIT_ID = {"train": 0, "val": 1, "test": 2}

_MAX_PARTS = max(len(t) for t in _TEMPLATES.values())
_MAX_CLUTTER = 8
_N_UNIFORMS = 400  # per image; fixed so that the layout of the random block never shifts


def _template_arrays(classes):
    """Templates of ``classes`` padded to ``_MAX_PARTS``: (C, P, 5) geometry, (C, P) shape,
    (C, P) active, and {keypoint name: (C,) part index or -1}."""
    C = len(classes)
    geo = np.zeros((C, _MAX_PARTS, 5))
    shape = np.zeros((C, _MAX_PARTS), dtype=np.int64)
    active = np.zeros((C, _MAX_PARTS), dtype=bool)
    kp = {k: np.full(C, -1) for k in KEYPOINT_NAMES}
    for c, name in enumerate(classes):
        for j, (s, x, y, sx, sy, ang, pname) in enumerate(_TEMPLATES[name]):
            geo[c, j] = (x, y, sx, sy, ang)
            shape[c, j] = s
            active[c, j] = True
            if pname in kp:
                kp[pname][c] = j
    return geo, shape, active, kp


class SceneError(ZFCoreError, ValueError):
    """A bad argument to the scene generator (group, split, size, indices)."""


class SceneIndexError(SceneError, IndexError):
    """A scene index outside its split."""


class SceneGeneratorError(ZFCoreError, RuntimeError):
    """The generator's per-image random stream ran out: a bug in a primitive's draw count."""


@dataclass
class SceneBatch:
    """Rendered scenes with ground truth.

    ``images`` (N, 3, H, W) float in [0, 1]; ``labels`` (N,) int64 class indices into
    ``classes``; ``boxes`` (N, 4) object box ``(x0, y0, x1, y1)`` in pixels; ``keypoints``
    ``{name: (N, 2)}`` ``(x, y)`` in pixels, NaN where the image has no such part (only faces have
    ``left_eye``, ``right_eye`` and ``nose``); ``indices`` the data set indices rendered.
    """

    images: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    keypoints: dict[str, torch.Tensor]
    indices: torch.Tensor
    classes: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def scene_labels(indices, num_classes: int) -> np.ndarray:
    """Class of each index: classes cycle with the index, so every split is balanced."""
    return np.asarray(indices, dtype=np.int64) % num_classes


class _Uniforms:
    """Hands out consecutive columns of the per-image uniform block (a fixed layout)."""

    def __init__(self, u: np.ndarray):
        self.u, self.pos = u, 0

    def take(self, *shape) -> np.ndarray:
        n = int(np.prod(shape)) if shape else 1
        out = self.u[:, self.pos : self.pos + n]
        self.pos += n
        if self.pos > self.u.shape[1]:
            raise SceneGeneratorError("scene generator ran out of per-image random numbers")
        return out.reshape((self.u.shape[0],) + tuple(shape)) if shape else out[:, 0]


def _luminance(rgb):
    return rgb @ np.array([0.299, 0.587, 0.114])


def _contrast_to(rgb, ref, min_diff):
    """Push ``rgb`` away from ``ref`` in luminance where they are closer than ``min_diff``
    (so parts stay visible whatever colours were drawn)."""
    lr, lc = _luminance(ref)[..., None], _luminance(rgb)[..., None]
    close = np.abs(lc - lr) < min_diff
    darker = rgb * 0.35
    lighter = 1 - (1 - rgb) * 0.35
    pushed = np.where(lr > 0.5, darker, lighter)
    return np.where(close, pushed, rgb)


# NumPy's SeedSequence (pool of 4 words) and PCG64 seeding, vectorised over the images: the
# per-image ``default_rng([seed, group, split, index])`` spends most of its time there.
_SS_INIT_A, _SS_MULT_A = 0x43B0D7E5, 0x931E8875
_SS_INIT_B, _SS_MULT_B = 0x8B51F9DD, 0x58F38DED
_SS_MIX_L, _SS_MIX_R = 0xCA01F9DD, 0x4973F715
_PCG_MULT = (2549297995355413924 << 64) + 4865540595714422341
_MASK128 = (1 << 128) - 1


def _seed_states(words: np.ndarray) -> list[tuple[int, int]]:
    """PCG64 ``(state, inc)`` that ``default_rng(list(row))`` starts from, for each row of
    ``words`` (n, 4), every entry in [0, 2**32): NumPy's ``SeedSequence`` entropy mixing and
    ``generate_state(4, uint64)``, then PCG64's ``set_seed``, done for all rows at once."""
    u32 = np.uint32
    with np.errstate(over="ignore"):
        const = [u32(_SS_INIT_A)]

        def hashmix(v):
            v = v ^ const[0]
            const[0] = const[0] * u32(_SS_MULT_A)
            v = v * const[0]
            return v ^ (v >> u32(16))

        def mix(x, y):
            r = u32(_SS_MIX_L) * x - u32(_SS_MIX_R) * y
            return r ^ (r >> u32(16))

        pool = [hashmix(words[:, i].astype(u32)) for i in range(4)]
        for i_src in range(4):
            for i_dst in range(4):
                if i_src != i_dst:
                    pool[i_dst] = mix(pool[i_dst], hashmix(pool[i_src]))
        out, hc = [], u32(_SS_INIT_B)
        for i in range(8):
            v = pool[i % 4] ^ hc
            hc = hc * u32(_SS_MULT_B)
            v = v * hc
            out.append((v ^ (v >> u32(16))).astype(np.uint64))
    w = [(out[2 * k] | (out[2 * k + 1] << np.uint64(32))).tolist() for k in range(4)]
    states = []
    for s0, s1, i0, i1 in zip(*w):
        inc = ((((i0 << 64) | i1) << 1) | 1) & _MASK128
        state = (inc * 1) & _MASK128  # step from state 0: 0 * mult + inc
        state = (state + ((s0 << 64) | s1)) & _MASK128
        states.append(((state * _PCG_MULT + inc) & _MASK128, inc))
    return states


def _uniform_block(seed: int, g: int, s: int, indices: np.ndarray, n: int) -> np.ndarray:
    """(len(indices), n) uniforms: row i is ``default_rng([seed, g, s, indices[i]]).random(n)``."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if not len(idx):
        return np.zeros((0, n))
    if not (0 <= seed < 2**32 and 0 <= idx.min() and idx.max() < 2**32):  # one word each
        return np.stack([np.random.default_rng([int(seed), g, s, int(i)]).random(n) for i in idx])
    words = np.empty((len(idx), 4), dtype=np.int64)
    words[:, 0], words[:, 1], words[:, 2], words[:, 3] = seed, g, s, idx
    bit = np.random.PCG64()
    gen = np.random.Generator(bit)
    out = np.empty((len(idx), n))
    st = {"bit_generator": "PCG64", "state": {"state": 0, "inc": 0}, "has_uint32": 0, "uinteger": 0}
    for row, (state, inc) in zip(out, _seed_states(words)):
        st["state"]["state"], st["state"]["inc"] = state, inc
        bit.state = st
        gen.random(out=row)
    return out


def _sample(seed: int, group: str, split: str, indices: np.ndarray, classes) -> dict:
    """Draw every random choice of the scenes ``indices`` (numpy, image units in [0, 1])."""
    g, s = _GROUP_ID[group], _SPLIT_ID[split]
    U = _uniform_block(int(seed), g, s, indices, _N_UNIFORMS)
    r = _Uniforms(U)
    N, C = len(indices), len(classes)
    labels = scene_labels(indices, C)
    geo, shape, active, kp = _template_arrays(classes)

    # --- the object: position, scale, rotation, aspect, mirroring ---------------------------
    R = 0.22 + 0.16 * r.take()  # half size, fraction of the image side
    cx = R * 0.8 + (1 - 1.6 * R) * r.take()
    cy = R * 0.8 + (1 - 1.6 * R) * r.take()
    rot = np.radians(-15 + 30 * r.take())
    aspect = 0.88 + 0.24 * r.take()
    flip = r.take() < 0.5
    # --- its parts: template plus jitter, colour and texture per part -----------------------
    P = _MAX_PARTS
    pg = geo[labels].copy()  # (N, P, 5): x, y, sx, sy, angle
    pg[..., 0] += 0.07 * (r.take(P) - 0.5) * 2
    pg[..., 1] += 0.07 * (r.take(P) - 0.5) * 2
    scale = 0.85 + 0.30 * r.take(P)
    pg[..., 2] *= scale
    pg[..., 3] *= scale
    pg[..., 4] += -10 + 20 * r.take(P)
    part_rgb = r.take(P, 3)
    part_tex = r.take(P, 5)
    # mirror, stretch, rotate, scale, place
    x = np.where(flip[:, None], -pg[..., 0], pg[..., 0]) * aspect[:, None]
    y = pg[..., 1] / aspect[:, None]
    ang = np.where(flip[:, None], -pg[..., 4], pg[..., 4])
    c, s_ = np.cos(rot)[:, None], np.sin(rot)[:, None]
    px = cx[:, None] + R[:, None] * (c * x - s_ * y)
    py = cy[:, None] + R[:, None] * (s_ * x + c * y)
    psx = R[:, None] * pg[..., 2] * aspect[:, None]
    psy = R[:, None] * pg[..., 3] / aspect[:, None]
    pang = ang + np.degrees(rot)[:, None]
    pshape = shape[labels]
    pactive = active[labels]
    # keep details visible against the object's first (largest) part
    base = part_rgb[:, :1, :]
    part_rgb[:, 1:] = _contrast_to(
        part_rgb[:, 1:], np.broadcast_to(base, part_rgb[:, 1:].shape), 0.25
    )

    # --- clutter: the same primitives, scattered behind the object --------------------------
    K = _MAX_CLUTTER
    n_clutter = 3 + np.floor(6 * r.take()).astype(int)  # 3..8
    cshape = np.minimum(np.floor(5 * r.take(K)), 4).astype(np.int64)
    ccx, ccy = r.take(K), r.take(K)
    csx = 0.03 + 0.08 * r.take(K)
    csy = csx * (0.3 + 0.7 * r.take(K))
    bar_like = (cshape == BAR) | (cshape == STRIPES)
    csy = np.where(bar_like, csx * (0.15 + 0.5 * r.take(K)), np.where(cshape == RING, csx, csy))
    cang = -90 + 180 * r.take(K)
    c_rgb = r.take(K, 3)
    c_tex = r.take(K, 5)
    cactive = np.arange(K)[None, :] < n_clutter[:, None]

    # --- background and lighting --------------------------------------------------------------
    bg = dict(
        rgb=r.take(3),
        rgb2=r.take(3),
        grad_dir=r.take() * 2 * np.pi,
        grating=r.take(4),
        light=r.take(3),
        noise=r.take(3),
    )
    # the object's body must stand out a little from the background
    part_rgb[:, 0] = _contrast_to(part_rgb[:, 0], bg["rgb"], 0.15)

    # keypoints: the eye on the viewer's left is ``left_eye`` (swap when mirrored)
    kps = {}
    for name in KEYPOINT_NAMES:
        j = kp[name][labels]
        if name in ("left_eye", "right_eye"):
            other = kp["right_eye" if name == "left_eye" else "left_eye"][labels]
            j = np.where(flip, other, j)
        has = j >= 0
        jj = np.where(has, j, 0)
        xy = np.stack([px[np.arange(N), jj], py[np.arange(N), jj]], axis=1)
        kps[name] = np.where(has[:, None], xy, np.nan)

    # slots in painter's order: clutter first, then the object's parts
    slots = dict(
        shape=np.concatenate([cshape, pshape], 1),
        active=np.concatenate([cactive, pactive], 1),
        x=np.concatenate([ccx, px], 1),
        y=np.concatenate([ccy, py], 1),
        sx=np.concatenate([csx, psx], 1),
        sy=np.concatenate([csy, psy], 1),
        angle=np.radians(np.concatenate([cang, pang], 1)),
        rgb=np.concatenate([c_rgb, part_rgb], 1),
        tex=np.concatenate([c_tex, part_tex], 1),
        object_part=np.concatenate([np.zeros((N, K), bool), pactive], 1),
    )
    return dict(labels=labels, slots=slots, bg=bg, keypoints=kps)


def _object_boxes(sl: dict, size: int) -> np.ndarray:
    """Tight axis-aligned box of the object's parts, in pixels, clipped to the image."""
    x, y = sl["x"] * size, sl["y"] * size
    sx, sy = sl["sx"] * size, sl["sy"] * size
    c, s = np.abs(np.cos(sl["angle"])), np.abs(np.sin(sl["angle"]))
    round_ = (sl["shape"] == DISC) | (sl["shape"] == RING)
    hx = np.where(round_, np.sqrt((sx * c) ** 2 + (sy * s) ** 2), sx * c + sy * s)
    hy = np.where(round_, np.sqrt((sx * s) ** 2 + (sy * c) ** 2), sx * s + sy * c)
    # triangles: exact extent of their three vertices
    cs, sn = np.cos(sl["angle"]), np.sin(sl["angle"])
    vx = np.stack([0 * sx, -sx, sx], -1)
    vy = np.stack([-sy, sy, sy], -1)
    tx = vx * cs[..., None] - vy * sn[..., None]
    ty = vx * sn[..., None] + vy * cs[..., None]
    tri = sl["shape"] == TRIANGLE
    x0 = np.where(tri, x + tx.min(-1), x - hx)
    x1 = np.where(tri, x + tx.max(-1), x + hx)
    y0 = np.where(tri, y + ty.min(-1), y - hy)
    y1 = np.where(tri, y + ty.max(-1), y + hy)
    m = sl["object_part"]
    boxes = np.stack(
        [
            np.where(m, x0, np.inf).min(1),
            np.where(m, y0, np.inf).min(1),
            np.where(m, x1, -np.inf).max(1),
            np.where(m, y1, -np.inf).max(1),
        ],
        1,
    )
    return np.clip(boxes, 0, size)


def _signed_distance(shape, a, b, sx, sy, present=None):
    """Approximate signed distance in pixels (negative inside) of points ``(a, b)`` in each
    primitive's own frame to its outline. ``shape`` (n, 1, 1) may mix the five shapes; only the
    formulas of the shapes present are evaluated (``present``: their set, when known; then
    ``shape`` is only read if there are several)."""
    if present is None:
        present = set(torch.unique(shape).tolist())
    m = torch.minimum(sx, sy)
    d = None

    def put(kind, value, also=None):
        nonlocal d
        if d is None:
            d = value
        else:
            where = shape == kind if also is None else (shape == kind) | (shape == also)
            d = torch.where(where, value, d)

    if present & {DISC, RING}:
        r = torch.div(a, sx).square_().add_(torch.div(b, sy).square_()).sqrt_()
        mid, half = (1 + _RING_INNER) / 2, (1 - _RING_INNER) / 2
        if DISC in present:
            put(DISC, (r - 1).mul_(m) if RING in present else r.sub_(1).mul_(m))
        if RING in present:
            put(RING, r.sub_(mid).abs_().sub_(half).mul_(m))
    if present & {BAR, STRIPES}:
        ex = a.abs().sub_(sx)
        put(BAR, torch.maximum(ex, b.abs().sub_(sy), out=ex), also=STRIPES)  # same outline
    if TRIANGLE in present:
        slant = a.abs().mul_(2 * sy).sub_((b + sy).mul_(sx)).div_(torch.sqrt(4 * sy**2 + sx**2))
        put(TRIANGLE, torch.maximum(b - sy, slant, out=slant))
    return d


_GRAIN_TILES = 16
_GRAIN: dict = {}


def _grain(size: int) -> torch.Tensor:
    """Fixed grain textures (T, 3, S, S) in [-0.5, 0.5] that scenes pick from (pixel noise that
    costs a copy, not a random draw)."""
    g = _GRAIN.get(size)
    if g is None:
        rng = np.random.default_rng([20140, size])
        g = torch.from_numpy(rng.random((_GRAIN_TILES, 3, size, size), dtype=np.float32) - 0.5)
        _GRAIN[size] = g
    return g


# Patch sides a primitive may be drawn on (geometric steps): grouping instances by patch size
# keeps the work near each primitive's own area.
_PATCH_SIZES = torch.unique(
    torch.tensor([int(math.ceil(4 * 1.25**k)) for k in range(40)] + [1 << 20])
)


def _half_extent(shape, sx, sy, c, s):
    """Half side of a square that holds the rotated primitive (pixels)."""
    round_ = (shape == DISC) | (shape == RING)
    hx = torch.where(round_, torch.sqrt((sx * c) ** 2 + (sy * s) ** 2), sx * c + sy * s)
    hy = torch.where(round_, torch.sqrt((sx * s) ** 2 + (sy * c) ** 2), sx * s + sy * c)
    return torch.maximum(hx, hy)


# Columns of the per-instance parameter table (one row per drawn primitive).
_X, _Y, _COS, _SIN, _SX, _SY, _AMP, _FX, _FY, _PHASE, _NSTRIPES, _OX, _OY = range(13)
_RGB = slice(13, 16)
_SHADE_NONE, _SHADE_WAVE, _SHADE_STRIPES = range(3)
_CHUNK = 32  # images per whole-frame step (keeps the temporaries in cache)


def _instances(sl: dict, S: int):
    """Every primitive to draw, one row each, in painter's order (slot-major, then image).

    Returns the parameter table (M, 16) (position, rotation, size in pixels, texture, patch
    origin, colour), the patch side, shape, texture kind, slot and canvas offset of the patch
    (channel 0) of each instance. All values are computed exactly as they are used per pixel, so
    grouping instances differently never changes a bit."""
    f32 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    active = torch.as_tensor(sl["active"])
    kn = torch.nonzero(active.t())  # (M, 2): slot, image
    k, n = kn[:, 0], kn[:, 1]
    take = lambda a: f32(a)[n, k]  # noqa: E731
    shape = torch.as_tensor(sl["shape"])[n, k]
    ang = take(sl["angle"])
    c, s = torch.cos(ang), torch.sin(ang)
    sx, sy = (take(sl["sx"]) * S).clamp(min=0.5), (take(sl["sy"]) * S).clamp(min=0.5)
    half = _half_extent(shape, sx, sy, c.abs(), s.abs()) + 2.0  # covers the soft edge
    need = torch.ceil(2 * half).to(torch.int64) + 1
    patch = torch.minimum(_PATCH_SIZES[torch.searchsorted(_PATCH_SIZES, need)], torch.tensor(S))
    t = take(sl["tex"])
    amp = torch.where(t[:, 0] < 0.5, torch.zeros_like(t[:, 0]), 0.3 * t[:, 1])
    t_freq, t_dir = np.pi * (1.5 + 4 * t[:, 2]), t[:, 3] * np.pi
    kind = torch.where(
        shape == STRIPES, _SHADE_STRIPES, torch.where(amp > 0, _SHADE_WAVE, _SHADE_NONE)
    )
    x, y = take(sl["x"]) * S, take(sl["y"]) * S
    half_p = patch.to(torch.float32) / 2
    lim = (S - patch).to(torch.float32)
    ox = torch.minimum(torch.floor(x - half_p).clamp_(min=0), lim)  # patch origin
    oy = torch.minimum(torch.floor(y - half_p).clamp_(min=0), lim)
    table = torch.stack(
        [
            x,
            y,
            c,
            s,
            sx,
            sy,
            amp,
            t_freq * torch.cos(t_dir),
            t_freq * torch.sin(t_dir),
            t[:, 4] * 2 * np.pi,
            np.pi * (2.5 + 3 * t[:, 2]),
            ox,
            oy,
        ],
        1,
    )
    table = torch.cat([table, f32(sl["rgb"])[n, k]], 1)
    start = n * (3 * S * S) + (oy * S + ox).to(torch.int64)  # canvas offset of the patch
    return table, patch, shape, kind, k, start


def _texture(cols, a, b, kind: int):
    """Shade of the parts in the frame ``(a, b)`` of each (n, P, P): a grating of random
    strength (``kind`` wave) or stripes. ``cols`` is their parameter table transposed, (16, n)."""
    n = cols.shape[1]
    col = lambda j: cols[j].view(n, 1, 1)  # noqa: E731
    v = b / col(_SY)
    if kind == _SHADE_WAVE:
        u = a / col(_SX)
        wave = u.mul_(col(_FX)).add_(v.mul_(col(_FY))).add_(col(_PHASE)).sin_()
        return wave.mul_(col(_AMP)).add_(1)
    stripes = v.add_(1).mul_(col(_NSTRIPES)).sin_().mul_(1.5).add_(0.5).clamp_(0, 1)
    return stripes.mul_(0.7).add_(0.3)


_PATCHES: dict = {}


def _patch(P: int, S: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres 0.5 ... P - 0.5 of a P x P patch, and the canvas offset of each of its
    pixels from its top-left pixel, (1, P * P), on an S x S image."""
    got = _PATCHES.get((P, S))
    if got is None:
        ar = torch.arange(P)
        got = _PATCHES[(P, S)] = (
            ar.to(torch.float32) + 0.5,
            (ar.view(P, 1) * S + ar.view(1, P)).view(1, P * P),
        )
    return got


def _cover(table, start, members, P: int, shp: int, kinds, S: int):
    """Coverage and colour of one group of instances (one patch side ``P``, one shape; ordered
    by texture kind, ``kinds`` = [(kind, first, stop)]), each on its P x P patch.

    Returns, for the covered pixels only (alpha > 0; elsewhere compositing would leave the canvas
    as it is), in instance order: their canvas offsets (channel 0), alpha and colour (3, L), and
    the number of covered pixels of each instance."""
    m, PP = members.numel(), P * P
    prm = table.index_select(0, members)
    cols = prm.t().contiguous()  # (16, m): one row a column
    col = lambda j: cols[j].view(m, 1, 1)  # noqa: E731
    x, y, c, s = col(_X), col(_Y), col(_COS), col(_SIN)
    grid, offsets = _patch(P, S)
    dx = (col(_OX) + grid.view(1, 1, P)) - x  # (m, 1, P)
    dy = (col(_OY) + grid.view(1, P, 1)) - y  # (m, P, 1)
    a = torch.add(dx * c, dy * s)
    b = torch.sub(dy * c, dx * s)
    d = _signed_distance(None, a, b, col(_SX), col(_SY), present={shp})
    alpha = d.neg_().add_(0.5).clamp_(0, 1).view(-1)  # 0.5 - d, in place
    sel = torch.nonzero(alpha).view(-1)
    # sel is sorted, so each instance's covered pixels are one run of it: find the run ends
    # (no per-pixel division or histogram)
    ends = torch.searchsorted(sel, torch.arange(0, (m + 1) * PP, PP))
    counts = ends[1:] - ends[:-1]
    inst = torch.repeat_interleave(counts, output_size=sel.numel())
    pix = torch.add(start.index_select(0, members).view(m, 1), offsets)
    colour = cols[_RGB].index_select(1, inst)
    cum = None
    for kind, i0, i1 in kinds:
        if kind == _SHADE_NONE:
            continue
        if cum is None:
            cum = ends.tolist()
        p0, p1 = cum[i0], cum[i1]
        if p1 > p0:
            shade = _texture(cols[:, i0:i1], a[i0:i1], b[i0:i1], kind).view(-1)
            colour[:, p0:p1].mul_(shade.index_select(0, sel[p0:p1] - i0 * PP))
    return pix.view(-1).index_select(0, sel), alpha.index_select(0, sel), colour, counts


def _composite(flat, table, patch, shape, kind, slot, start, S: int, K: int):
    """Draw every instance over the channels-first canvas ``flat`` (flattened) in painter's
    order. Coverage is computed in groups of one patch side and shape (a few large tensor ops
    each); the covered pixels are then blended one slot at a time (within a slot every image
    holds at most one primitive, so no pixel occurs twice in a step and the order of the
    pixels inside a step does not matter)."""
    M = table.shape[0]
    if M == 0:  # nothing to draw (an empty batch)
        return
    key = (patch * 8 + shape) * 4 + kind
    order = torch.argsort(key, stable=True)
    keys, runs = torch.unique_consecutive(key[order], return_counts=True)
    groups: dict = {}
    pos = 0
    run_bounds = [0]
    for kk, r in zip(keys.tolist(), runs.tolist()):
        groups.setdefault(kk // 4, []).append((kk % 4, pos, pos + r))
        pos += r
        run_bounds.append(pos)
    parts, group_first = [], []
    for g, kinds in groups.items():
        g0, g1 = kinds[0][1], kinds[-1][2]
        group_first.append(g0)
        parts.append(
            _cover(
                table,
                start,
                order[g0:g1],
                g // 8,
                g % 8,
                [(kd, i0 - g0, i1 - g0) for kd, i0, i1 in kinds],
                S,
            )
        )
    # Each run (one patch side, shape and texture kind) lists its instances in slot order, so
    # the pixels of one slot are a few contiguous pieces of the groups' outputs.
    slot_o = slot.index_select(0, order)
    changes = torch.nonzero(slot_o[1:] != slot_o[:-1]).view(-1).add_(1).tolist()
    bounds = sorted(set(changes).union(run_bounds))
    slots = slot_o.tolist()
    cum = [0] + torch.cat([p[3] for p in parts]).cumsum(0).tolist()  # pixels before instance
    pieces: list = [[] for _ in range(K)]
    g = 0
    for i0, i1 in zip(bounds[:-1], bounds[1:]):
        while g + 1 < len(group_first) and group_first[g + 1] <= i0:
            g += 1
        base = cum[group_first[g]]
        p0, p1 = cum[i0] - base, cum[i1] - base
        if p1 > p0:
            pieces[slots[i0]].append((g, p0, p1))
    channels = [flat.narrow(0, c * S * S, flat.numel() - c * S * S) for c in range(3)]
    for k in range(K):
        got = pieces[k]
        if not got:
            continue
        if len(got) == 1:
            g, p0, p1 = got[0]
            pix, w, colour = parts[g][0][p0:p1], parts[g][1][p0:p1], parts[g][2][:, p0:p1]
        else:
            pix = torch.cat([parts[g][0][p0:p1] for g, p0, p1 in got])
            w = torch.cat([parts[g][1][p0:p1] for g, p0, p1 in got])
            colour = torch.cat([parts[g][2][:, p0:p1] for g, p0, p1 in got], 1)
        for c, canvas in enumerate(channels):
            old = canvas.index_select(0, pix)
            canvas.scatter_(0, pix, torch.lerp(old, colour[c], w))


def _render(sample: dict, size: int) -> torch.Tensor:
    """Composite the sampled scenes into (N, 3, size, size) images in [0, 1]."""
    sl, bg = sample["slots"], sample["bg"]
    N = sl["x"].shape[0]
    S = size
    f32 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    coord = torch.arange(S, dtype=torch.float32) + 0.5  # pixel centres
    xs, ys = coord.view(1, 1, S) / S - 0.5, coord.view(1, S, 1) / S - 0.5

    def plane(direction, scale=1.0, offset=0.0):
        """Per image ``scale * ((x - .5) cos d + (y - .5) sin d) + offset``, as a function of a
        chunk of images ``[i, j)`` that returns (j - i, 1, S, S)."""
        d = f32(direction).view(N, 1, 1)
        cx, cy = torch.cos(d) * scale, torch.sin(d) * scale
        if isinstance(offset, torch.Tensor):
            return lambda i, j: (xs * cx[i:j] + ys * cy[i:j] + offset[i:j]).unsqueeze(1)
        return lambda i, j: (xs * cx[i:j] + ys * cy[i:j] + offset).unsqueeze(1)

    # background: two colours blended along a gradient, times a grating.
    # The canvas is channels first, (N, 3, S, S); whole-frame steps run a few images at a time
    # so that their temporaries stay in cache.
    rgb1, rgb2 = f32(bg["rgb"]).view(N, 3, 1, 1), f32(bg["rgb2"]).view(N, 3, 1, 1)
    drgb = rgb2 - rgb1
    mix = plane(bg["grad_dir"], 0.7, 0.5)
    gr = f32(bg["grating"])
    g_amp, g_freq = (0.10 * gr[:, 0]).view(N, 1, 1, 1), 2 * np.pi * (2 + 10 * gr[:, 1])
    grating = plane(
        gr[:, 2] * np.pi,
        g_freq.view(N, 1, 1),
        (
            gr[:, 3] * 2 * np.pi
            + g_freq * 0.5 * (torch.cos(gr[:, 2] * np.pi) + torch.sin(gr[:, 2] * np.pi))
        ).view(N, 1, 1),
    )
    img = torch.empty(N, 3, S, S)
    for i in range(0, N, _CHUNK):
        j = min(N, i + _CHUNK)
        part = img[i:j]
        # rgb1 + mix * drgb, with addcmul's own rounding; filling the part with rgb1 first lets
        # the op run vectorised (only one operand broadcast)
        part.copy_(rgb1[i:j].expand_as(part))
        part.addcmul_(mix(i, j).clamp_(0, 1).mul_(0.6), drgb[i:j])
        part.mul_(grating(i, j).sin_().mul_(g_amp[i:j]).add_(1))

    # primitives, each on a small patch around it
    table, patch, shape, kind, slot, start = _instances(sl, S)
    _composite(img.view(-1), table, patch, shape, kind, slot, start, S, sl["shape"].shape[1])

    # lighting: a global gain and a directional gradient, then grain
    li = f32(bg["light"])
    gain = (0.7 + 0.5 * li[:, 0]).view(N, 1, 1)
    light = plane(li[:, 2] * 2 * np.pi, gain * 0.35 * li[:, 1].view(N, 1, 1), gain)
    nz = f32(bg["noise"])
    tile = torch.minimum((nz[:, 1] * _GRAIN_TILES).to(torch.int64), torch.tensor(_GRAIN_TILES - 1))
    grain, g_scale = _grain(S), (0.08 * nz[:, 0]).view(N, 1, 1, 1)
    tiles = tile.tolist()
    images, grains, scales = img.unbind(0), grain.unbind(0), g_scale.unbind(0)
    for i in range(0, N, _CHUNK):
        j = min(N, i + _CHUNK)
        part = img[i:j]
        part.mul_(light(i, j))
        for n, t in enumerate(tiles[i:j], i):  # the tile itself, not a gathered copy
            images[n].addcmul_(grains[t], scales[n])
        part.clamp_(0, 1)
    return img


@contextlib.contextmanager
def _torch_single_threaded():
    """Run torch ops single-threaded inside the block (the caller's setting is restored).

    Rendering is many small tensor ops. With several intra-op threads every op waits at a
    barrier for all of them, which on a shared machine (another process on the second core)
    made rendering ten times slower than with one thread (measured: 107 vs 1,476 images/s at
    96 px). Splitting a batch across Python threads did not help either (the GIL is held
    between the small ops)."""
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def render_scenes(
    indices,
    *,
    size: int,
    classes=MAIN_CLASSES,
    group: str = "main",
    split: str = "train",
    seed: int = 0,
) -> SceneBatch:
    """Render the scenes ``indices`` of ``(seed, group, split)`` at ``size`` pixels.

    A pure function of its arguments: the same index always gives the same image, whatever else
    is in the batch. ``classes`` are the class names of ``group`` (``GROUPS[group]``).
    """
    if group not in _GROUP_ID:
        raise SceneError(f"group must be one of {sorted(_GROUP_ID)}, not {group!r}")
    if split not in _SPLIT_ID:
        raise SceneError(f"split must be one of {sorted(_SPLIT_ID)}, not {split!r}")
    if not isinstance(size, int) or size < 8:
        raise SceneError(f"size must be an int >= 8 pixels, not {size!r}")
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if (idx < 0).any():
        raise SceneError("scene indices must be >= 0")
    sample = _sample(seed, group, split, idx, classes)
    with _torch_single_threaded():
        images = _render(sample, size)
    boxes = _object_boxes(sample["slots"], size)
    kps = {
        k: torch.as_tensor(v * size, dtype=torch.float32) for k, v in sample["keypoints"].items()
    }
    return SceneBatch(
        images=images,
        labels=torch.as_tensor(sample["labels"]),
        boxes=torch.as_tensor(boxes, dtype=torch.float32),
        keypoints=kps,
        indices=torch.as_tensor(idx),
        classes=tuple(classes),
    )


# --------------------------------------------------------------------------------------------
# The torch Dataset
# --------------------------------------------------------------------------------------------
def transfer_split_sizes(profile) -> dict[str, int]:
    """Images per class of the transfer group: enough for Tables 4-7's n = 5, 10, 15, 30
    training images per class, plus validation and test images."""
    per_class_main = max(1, profile.n_train // max(1, profile.num_classes))
    train = min(60, max(30, per_class_main // 2))
    test = min(50, max(20, profile.n_test // max(1, profile.num_classes) // 2))
    return {"train": train, "val": max(10, test // 2), "test": test}


class SceneDataset(torch.utils.data.Dataset):
    """The procedural scenes of a profile as a torch ``Dataset`` of ``(image, label)``.

    Images are normalised for the model (:func:`zfcore.data.normalize`). ``__getitems__`` renders
    a whole batch at once, so a ``DataLoader`` gets batch-speed rendering for free. With
    ``augment=True`` every image is one of the paper's 10 training views (five crops, mirrored or
    not; section 3.1), chosen by ``(seed, epoch, index)``. :meth:`scenes` returns the ground truth
    (images in [0, 1], boxes, keypoints).
    """

    def __init__(
        self,
        profile,
        split: str = "train",
        group: str = "main",
        *,
        augment: bool = False,
        epoch: int = 0,
    ):

        self.profile = get_profile(profile)
        if split not in _SPLIT_ID:
            raise SceneError(f"split must be one of 'train', 'val', 'test', not {split!r}")
        if group not in GROUPS:
            raise SceneError(
                f"group must be 'main' (pretraining classes) or 'transfer' "
                f"(held-out classes), not {group!r}"
            )
        self.split, self.group = split, group
        self.augment, self.epoch = bool(augment), int(epoch)
        p = self.profile
        if group == "main":
            if p.num_classes > len(MAIN_CLASSES):
                raise SceneError(
                    f"profile {p.name!r} asks for {p.num_classes} classes but the "
                    f"procedural set has {len(MAIN_CLASSES)} main classes"
                )
            self.classes = tuple(MAIN_CLASSES[: p.num_classes])
            self.length = {"train": p.n_train, "val": p.n_val, "test": p.n_test}[split]
        else:
            self.classes = TRANSFER_CLASSES
            self.length = transfer_split_sizes(p)[split] * len(TRANSFER_CLASSES)
        self.size = p.image_size
        self.seed = p.data_seed

    def __len__(self) -> int:
        return self.length

    def _check(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = idx[(idx < 0) | (idx >= self.length)]
        if bad.size:
            raise SceneIndexError(
                f"index {int(bad[0])} out of range for the {self.group}/{self.split} "
                f"split of {self.length} scenes"
            )
        return idx

    def scenes(self, indices) -> SceneBatch:
        """Ground truth of ``indices``: images in [0, 1] (un-augmented), labels, boxes and
        keypoints."""
        return render_scenes(
            self._check(indices),
            size=self.size,
            classes=self.classes,
            group=self.group,
            split=self.split,
            seed=self.seed,
        )

    def labels(self) -> torch.Tensor:
        """Every label of the split, without rendering."""
        return torch.as_tensor(scene_labels(np.arange(self.length), len(self.classes)))

    def images(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised model inputs ``(N, 3, S, S)`` and labels of ``indices`` (augmented if the
        data set was made with ``augment=True``)."""

        batch = self.scenes(indices)
        x = batch.images
        if self.augment:
            pos, flip = crop_choices(self.seed, self.epoch, batch.indices.numpy())
            x = paper_crops(x, pos, flip)
        return normalize(x, self.profile), batch.labels

    def __getitem__(self, i):
        x, y = self.images([int(i)])
        return x[0], y[0]

    def __getitems__(self, indices):
        x, y = self.images(list(indices))
        return list(zip(x, y))

    def __repr__(self) -> str:
        return (
            f"SceneDataset(profile={self.profile.name!r}, split={self.split!r}, "
            f"group={self.group!r}, n={self.length}, size={self.size}, "
            f"augment={self.augment}, classes={len(self.classes)})"
        )
