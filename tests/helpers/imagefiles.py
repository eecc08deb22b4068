"""Image files of every kind people have, written by the tests (nothing is committed).

Some writers deliberately avoid Pillow (:func:`write_png`), so the loader is checked against an
independent encoder: a PNG is a signature and CRC-checked chunks around a zlib stream of
filtered rows (PNG spec, sections 5 and 9; filter type 0 is "none").
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

RED, GREEN, BLUE, YELLOW = (230, 20, 20), (20, 200, 40), (30, 40, 220), (240, 220, 30)


def quadrants(h: int, w: int) -> np.ndarray:
    """An upright test photo: red top-left, green top-right, blue bottom-left, yellow
    bottom-right, so any rotation, flip or off-centre crop changes what is where."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = RED
    a[: h // 2, w // 2 :] = GREEN
    a[h // 2 :, : w // 2] = BLUE
    a[h // 2 :, w // 2 :] = YELLOW
    return a


def gradient(h: int, w: int, seed: int = 0, wavelength: float = 1.0) -> np.ndarray:
    """A smooth RGB photo-like image (gradients, a wave of about ``60 * wavelength`` pixels and
    a little noise), uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    a = np.stack(
        [x / max(w - 1, 1), y / max(h - 1, 1), 0.5 + 0.4 * np.sin((x / 9 + y / 13) / wavelength)],
        -1,
    )
    a = a * 235 + rng.normal(0, 6, a.shape) + 10
    return np.clip(a, 0, 255).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(a: np.ndarray, bit_depth: int = 8) -> bytes:
    """Encode ``a`` (H, W) gray or (H, W, 3) RGB, uint8 or uint16, as PNG without Pillow."""
    a = np.asarray(a)
    h, w = a.shape[:2]
    color_type = 0 if a.ndim == 2 else 2
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = a.astype(dtype).reshape(h, -1).view(np.uint8).reshape(h, -1)
    raw = b"".join(b"\x00" + r.tobytes() for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def write_png(path: Path, a: np.ndarray, bit_depth: int = 8) -> Path:
    Path(path).write_bytes(png_bytes(a, bit_depth))
    return Path(path)


def bomb_png(width: int, height: int) -> bytes:
    """A valid-looking PNG of a few hundred bytes whose header declares ``width x height``
    1-bit pixels: the start of a zlib stream of zeros (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    data = comp.compress(row * min(height, 64)) + comp.flush(zlib.Z_SYNC_FLUSH)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
    )


def stored_for_orientation(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores so that EXIF ``orientation`` displays ``upright`` (EXIF 2.3,
    tag 0x0112: 1 normal, 2 mirrored, 3 rotated 180, 4 flipped, 5 transposed, 6 needs 90 degrees
    clockwise, 7 transverse, 8 needs 90 degrees counter-clockwise)."""
    u = upright
    return {
        1: lambda: u,
        2: lambda: u[:, ::-1],
        3: lambda: u[::-1, ::-1],
        4: lambda: u[::-1, :],
        5: lambda: u.transpose(1, 0, 2),
        6: lambda: np.rot90(u, 1),  # displayed after turning 90 degrees clockwise
        7: lambda: u[::-1, ::-1].transpose(1, 0, 2),
        8: lambda: np.rot90(u, -1),
    }[orientation]().copy()


def exif_photo(upright: np.ndarray, orientation: int, fmt: str = "JPEG", **save) -> bytes:
    """``upright`` stored as a camera would with EXIF ``orientation`` (JPEG or PNG bytes)."""
    img = Image.fromarray(stored_for_orientation(upright, orientation))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, fmt, exif=exif.tobytes(), **save)
    return buf.getvalue()


def pil_bytes(img: Image.Image, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def cmyk_to_rgb(c: int, m: int, y: int, k: int) -> tuple[float, float, float]:
    """The naive (profile-less) CMYK -> RGB conversion, 0-255 in, 0-1 out."""
    return tuple((255 - v) * (255 - k) / 255 / 255 for v in (c, m, y))


def sample_files(folder: Path, size: tuple[int, int] = (40, 30)) -> dict[str, Path]:
    """One small valid file of every supported kind in ``folder``: name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    rgb = Image.fromarray(gradient(h, w))
    out = {}

    def put(name, data):
        p = folder / name
        p.write_bytes(data)
        out[name] = p

    put("rgb.jpg", pil_bytes(rgb, "JPEG", quality=95))
    put("rgb.png", pil_bytes(rgb, "PNG"))
    put("rgb.webp", pil_bytes(rgb, "WEBP", lossless=True))
    put("rgb.bmp", pil_bytes(rgb, "BMP"))
    put("rgb.tif", pil_bytes(rgb, "TIFF"))
    put("rgb.ppm", pil_bytes(rgb, "PPM"))
    put("pal.gif", pil_bytes(rgb.convert("P"), "GIF"))
    put("gray.png", pil_bytes(rgb.convert("L"), "PNG"))
    put("rgba.png", pil_bytes(rgb.convert("RGBA"), "PNG"))
    put("cmyk.jpg", pil_bytes(rgb.convert("CMYK"), "JPEG", quality=95))
    put("gray16.png", png_bytes(np.asarray(rgb.convert("L")).astype(np.uint16) * 257, 16))
    return out
