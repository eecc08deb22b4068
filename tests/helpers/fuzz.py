"""Seeded generators of malformed image files and arrays, and a tally of what the API did.

Every case is reproducible from ``(seed, index)``: a failing case is re-made with
``image_case(seed, i)`` / ``array_case(seed, i)``.

Malformed files start from a valid image of a random format and pixel layout and are then
damaged the ways files get damaged: cut short, bits flipped, bytes overwritten, inserted or
deleted, header sizes changed (with the PNG CRC recomputed so the lie is believed), two files
glued together, renamed to another extension, emptied, or replaced by noise or text.
"""

from __future__ import annotations

import io
import struct
import traceback
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PIL import Image

EXTS = [".jpg", ".png", ".webp", ".gif", ".bmp", ".tif", ".ppm", ".jpeg", ".txt", ""]


def _base_image(rng: np.random.Generator) -> tuple[bytes, str]:
    """A valid small image: (bytes, natural extension)."""
    h, w = (int(v) for v in rng.integers(1, 48, 2))
    a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    rgb = Image.fromarray(a[..., :3])
    choice = int(rng.integers(0, 15))
    buf = io.BytesIO()
    if choice == 0:
        rgb.save(buf, "JPEG", quality=int(rng.integers(20, 100)))
        ext = ".jpg"
    elif choice == 1:
        rgb.convert("L").save(buf, "JPEG")
        ext = ".jpg"
    elif choice == 2:
        rgb.convert("CMYK").save(buf, "JPEG")
        ext = ".jpg"
    elif choice == 3:
        rgb.save(buf, "PNG")
        ext = ".png"
    elif choice == 4:
        Image.fromarray(a, "RGBA").save(buf, "PNG")
        ext = ".png"
    elif choice == 5:
        rgb.convert("P").save(buf, "PNG", transparency=0)
        ext = ".png"
    elif choice == 6:
        Image.fromarray((a[..., 0].astype(np.uint16) * 257)).save(buf, "PNG")
        ext = ".png"
    elif choice == 7:
        rgb.save(buf, "WEBP", lossless=bool(rng.integers(0, 2)))
        ext = ".webp"
    elif choice == 8:
        rgb.convert("P").save(buf, "GIF")
        ext = ".gif"
    elif choice == 9:
        rgb.save(buf, "BMP")
        ext = ".bmp"
    elif choice == 10:
        rgb.save(buf, "TIFF")
        ext = ".tif"
    elif choice == 11:
        rgb.save(buf, "PPM")
        ext = ".ppm"
    elif choice == 12:
        exif = Image.Exif()
        exif[0x0112] = int(rng.integers(1, 9))
        rgb.save(buf, "JPEG", exif=exif.tobytes())
        ext = ".jpg"
    elif choice == 13:
        Image.fromarray(a, "RGBA").save(buf, "WEBP")
        ext = ".webp"
    else:
        Image.fromarray(a[..., 0].astype(np.uint16) * 3).save(buf, "TIFF")
        ext = ".tif"
    return buf.getvalue(), ext


def _fix_png_crcs(data: bytearray) -> bytearray:
    """Recompute every chunk CRC of a (damaged) PNG, so the damage passes the CRC check."""
    i = 8
    while i + 8 <= len(data):
        n = struct.unpack(">I", bytes(data[i : i + 4]))[0]
        end = i + 8 + n
        if end + 4 > len(data):
            break
        data[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(data[i + 4 : end])))
        i = end + 4
    return data


MUTATIONS = (
    "truncate",
    "flip_bits",
    "overwrite",
    "insert",
    "delete",
    "header_size",
    "glue",
    "rename",
    "empty",
    "noise",
    "text",
    "png_lie",
)


def image_case(seed: int, i: int) -> tuple[str, bytes, str]:
    """``(mutation, bytes, file extension)`` of malformed image number ``i``."""
    rng = np.random.default_rng([seed, i])
    data, ext = _base_image(rng)
    d = bytearray(data)
    m = MUTATIONS[int(rng.integers(0, len(MUTATIONS)))]
    n = len(d)
    if m == "truncate":
        d = d[: int(rng.integers(0, n))]
    elif m == "flip_bits":
        for _ in range(int(rng.integers(1, 20))):
            j = int(rng.integers(0, n))
            d[j] ^= 1 << int(rng.integers(0, 8))
    elif m == "overwrite":
        j = int(rng.integers(0, n))
        k = int(rng.integers(1, 64))
        d[j : j + k] = rng.integers(0, 256, min(k, n - j), dtype=np.uint8).tobytes()
    elif m == "insert":
        j = int(rng.integers(0, n))
        d[j:j] = rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
    elif m == "delete":
        j = int(rng.integers(0, n))
        del d[j : j + int(rng.integers(1, 200))]
    elif m == "header_size":  # enormous or zero sizes in the first 64 bytes
        j = int(rng.integers(0, min(n, 64)))
        d[j : j + 4] = struct.pack(
            ">I",
            int(rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, int(rng.integers(0, 1 << 32))])),
        )
    elif m == "glue":
        other, _ = _base_image(rng)
        d = d + bytearray(other) if rng.integers(0, 2) else bytearray(other[: len(other) // 2]) + d
    elif m == "rename":
        ext = str(rng.choice(EXTS))
    elif m == "empty":
        d = bytearray()
    elif m == "noise":
        d = bytearray(rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes())
    elif m == "text":
        d = bytearray(b"<html>" + b"not an image " * int(rng.integers(1, 50)))
    elif m == "png_lie":  # a PNG whose IHDR lies, with valid CRCs
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
        d = bytearray(buf.getvalue())
        w, h = (int(v) for v in rng.choice([1, 7, 8, 9, 4096, 70000, 2**31 - 1], 2))
        d[16:24] = struct.pack(">II", w, h)
        d[24] = int(rng.choice([1, 2, 4, 8, 16, 3, 0]))  # bit depth
        d[25] = int(rng.choice([0, 2, 3, 4, 6, 5]))  # colour type
        d = _fix_png_crcs(d)
        ext = ".png"
    if rng.random() < 0.1:
        ext = str(rng.choice(EXTS))
    return m, bytes(d), ext


def array_case(seed: int, i: int) -> tuple[str, Any]:
    """``(description, array or tensor)`` of odd array number ``i``."""
    import torch

    rng = np.random.default_rng([seed, 10_000 + i])
    ndim = int(rng.choice([0, 1, 2, 3, 3, 3, 4, 5]))
    shape = tuple(int(rng.choice([0, 1, 2, 3, 4, 5, 7, 33, 64])) for _ in range(ndim))
    dtype = rng.choice(
        [
            "uint8",
            "uint16",
            "int8",
            "int32",
            "int64",
            "float16",
            "float32",
            "float64",
            "bool",
            "complex64",
            "object",
        ]
    )
    size = int(np.prod(shape)) if shape else 1
    kind = rng.choice(["unit", "byte", "wide", "special"])
    if kind == "unit":
        v = rng.random(size)
    elif kind == "byte":
        v = rng.integers(0, 256, size).astype(np.float64)
    elif kind == "wide":
        v = rng.normal(0, 1e6, size)
    else:
        v = rng.choice([np.nan, np.inf, -np.inf, -1.0, 0.0, 1.0, 1e300], size)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = (
            v.astype(dtype).reshape(shape)
            if dtype != "object"
            else np.array(v, dtype=object).reshape(shape)
        )
    if dtype not in ("object", "complex64") and rng.random() < 0.4:
        t = torch.from_numpy(np.ascontiguousarray(a))
        if t.dim() == 3 and rng.random() < 0.5:
            t = t.permute(2, 0, 1)
        return f"tensor {tuple(t.shape)} {t.dtype} {kind}", t
    return f"array {a.shape} {a.dtype} {kind}", a


@dataclass
class Tally:
    """What a public function did with malformed input: ``ok``, documented errors by class, and
    any other exception (a crash) with how to reproduce it."""

    ok: int = 0
    documented: Counter = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)
    by_case: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.ok + sum(self.documented.values()) + len(self.crashes)

    def run(
        self,
        label: str,
        call: Callable[[], Any],
        allowed: tuple[type, ...],
        check: Callable[[Any], bool] | None = None,
    ) -> None:
        self.by_case[label.split()[0]] += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = call()
        except allowed as e:
            self.documented[type(e).__name__] += 1
            if not str(e).strip():
                self.crashes.append(f"{label}: {type(e).__name__} without a message")
            return
        except Exception as e:  # noqa: BLE001 - any undocumented exception is a finding
            self.crashes.append(
                f"{label}: {type(e).__name__}: {e}\n" + "".join(traceback.format_exc(limit=-3))
            )
            return
        if check is not None and not check(out):
            self.crashes.append(f"{label}: returned a bad result")
            return
        self.ok += 1

    def line(self) -> str:
        errs = " ".join(f"{k}={v}" for k, v in sorted(self.documented.items()))
        return f"cases={self.total} ok={self.ok} {errs} crashes={len(self.crashes)}"
