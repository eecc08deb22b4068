"""The user's own photos (and scikit-image's sample photos) as model input, the same way every time.

The paper feeds its network 224x224 crops of images whose short side was resized to 256
(section 3). A photo from a user goes through one fixed pipeline, whatever its format:

1. **decode** safely: only the raster formats below are opened (never PostScript/EPS, which
   Pillow would hand to Ghostscript), the pixel count is checked from the header *before* any
   pixel is decoded (a decompression bomb is refused, not unpacked), the whole file is decoded
   (a truncated file is an error, not a grey half-image), and the first frame of an animation or
   the first page of a multi-page TIFF is used;
2. **orient** by the EXIF orientation tag (phone photos are stored sideways);
3. **colour**: an embedded ICC profile (Adobe RGB, Display P3, CMYK press profiles) is converted
   to sRGB; CMYK, YCbCr, palette and bilevel images become RGB; grayscale stays one channel and
   is repeated to three; 16-bit and float images keep their precision; transparency is
   composited over a plain background (white by default);
4. **geometry**: the centre square of side ``min(height, width)`` is cut out and resized to
   ``profile.image_size`` (bilinear with antialiasing, so a huge photo is averaged, not
   aliased): exactly "resize the short side, centre crop";
5. **normalise** with :func:`zfcore.data.normalize` for the profile's network.

Everything that can go wrong with a file raises :class:`ImageLoadError` (a ``ValueError``) whose
message names the file, the problem and the fix; :class:`ImageTooLargeError` is the decompression
bomb case. :func:`load_folder` and :func:`iter_folder` skip bad files and *list* them with their
reasons (``ImageBatch.skipped``), never silently. Arrays and tensors (for example
``skimage.data`` photos) enter at step 3 through :func:`to_model_input`; a bad array raises
:class:`ImageArrayError` (or ``TypeError`` for a wrong type).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ZFCoreError
from ..profiles import Profile, get_profile
from .transforms import normalize

__all__ = [
    "ImageArgumentError",
    "ImageArgumentTypeError",
    "PhotoFolder",
    "ImageLoadError",
    "ImageTooLargeError",
    "ImageArrayError",
    "SkippedFile",
    "ImageBatch",
    "load_image",
    "load_folder",
    "iter_folder",
    "list_images",
    "to_model_input",
    "sample_photos",
    "PhotoStream",
    "photos_first",
    "open_image",
    "SAMPLE_PHOTOS",
    "SAMPLE_PHOTO_CLASSES",
    "IMAGE_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "WHITE",
]

#: Pillow format -> the file name endings that may carry it. Nothing else is ever opened.
FORMAT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "MPO": (".jpg", ".jpeg", ".jpe", ".jfif", ".mpo"),  # multi-picture JPEG from phones
    "PNG": (".png", ".apng"),
    "WEBP": (".webp",),
    "GIF": (".gif",),
    "BMP": (".bmp", ".dib"),
    "TIFF": (".tif", ".tiff"),
    "PPM": (".ppm", ".pgm", ".pbm", ".pnm"),
}
try:  # AVIF needs Pillow built with libavif
    from PIL import features as _features

    if _features.check("avif"):
        FORMAT_EXTENSIONS["AVIF"] = (".avif",)
except Exception:  # pragma: no cover - depends on the Pillow build
    pass

Image.init()  # register every Pillow plugin, so the allow-list below can name them
_ALLOWED_FORMATS = tuple(f for f in FORMAT_EXTENSIONS if f in Image.OPEN)
#: Every file name ending :func:`load_folder` treats as an image.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(e for exts in FORMAT_EXTENSIONS.values() for e in exts)

# Image-like files people have that we cannot read: say what to do instead of "unidentified".
_UNSUPPORTED = {
    ".heic": "HEIC/HEIF (iPhone) images",
    ".heif": "HEIC/HEIF (iPhone) images",
    ".svg": "SVG drawings",
    ".psd": "Photoshop files",
    ".eps": "PostScript files",
    ".pdf": "PDF documents",
    ".raw": "camera RAW files",
    ".cr2": "camera RAW files",
    ".cr3": "camera RAW files",
    ".nef": "camera RAW files",
    ".arw": "camera RAW files",
    ".dng": "camera RAW files",
    ".orf": "camera RAW files",
    ".rw2": "camera RAW files",
    ".jp2": "JPEG 2000 files",
    ".jxl": "JPEG XL files",
    ".ico": "icon files",
}

# What a file that is not an image usually is, from its first bytes (for the error message).
_MAGIC = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%!PS", "a PostScript file"),
    (b"<svg", "an SVG drawing"),
    (b"<?xml", "an XML file"),
    (b"<!DOCTYPE html", "an HTML page (a web page saved instead of the image?)"),
    (b"<html", "an HTML page (a web page saved instead of the image?)"),
    (b"\x80\x02", "a Python pickle"),
    (b"ftypheic", "a HEIC image"),
    (b"ftypmif1", "a HEIF image"),
    (b"ftyp", "an MP4/MOV video or HEIC image"),
    (b"RIFF", "a RIFF file (WAV/AVI)"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"{", "a JSON/text file"),
)

#: Largest decoded size accepted by default: Pillow's own decompression-bomb limit
#: (``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 megapixels, e.g. 16,000 x 11,000).
DEFAULT_MAX_PIXELS: int = 2 * 89_478_485
_REFETCH = "the download or copy did not finish, or the file is damaged; fetch it again"
#: Background that transparent pixels are composited over (RGB, 0-255).
WHITE = (255, 255, 255)


# ---------------------------------------------------------------------------------------------
# Errors and results
# ---------------------------------------------------------------------------------------------


class ImageLoadError(ZFCoreError, ValueError):
    """A file that cannot be used as an image. ``str(e)`` is ``"<file>: <problem>. <fix>"``."""

    def __init__(self, path: "str | Path | None", problem: str, fix: str = ""):
        self.path = None if path is None else Path(path)
        self.problem = problem
        self.fix = fix
        where = f"{path}: " if path is not None else ""
        super().__init__(f"{where}{problem}" + (f". {fix}" if fix else ""))

    def __reduce__(self):  # keeps the exception picklable (DataLoader workers, pytest-xdist)
        return (type(self), (self.path, self.problem, self.fix))


class ImageTooLargeError(ImageLoadError):
    """The header declares more pixels than allowed (a decompression bomb or a giant scan)."""


class ImageArrayError(ZFCoreError, ValueError):
    """An array or tensor that is not an image (wrong shape, dtype or value range)."""


class ImageArgumentError(ZFCoreError, ValueError):
    """A bad argument to a photo loader (a size limit, a batch size, a background colour)."""


class ImageArgumentTypeError(ImageArgumentError, TypeError):
    """An argument of the wrong type for a photo loader."""


@dataclass
class SkippedFile:
    """A file of a folder that was not loaded, and why (the message of its error)."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path.name}: {self.reason}"


@dataclass
class ImageBatch:
    """Images ready for the network, with where they came from and what was left out.

    ``images`` is ``(N, 3, S, S)`` float32: normalised for the profile's network, or in
    ``[0, 1]`` when loaded with ``normalized=False`` (``self.normalized`` says which).
    ``names[i]`` is the file name (or sample photo name) of ``images[i]``, ``paths[i]`` its path
    (``None`` for arrays), ``original_sizes[i]`` its ``(width, height)`` after EXIF rotation.
    ``skipped`` lists every file that was not loaded with the reason.
    """

    images: torch.Tensor
    names: list[str]
    paths: list[Path | None]
    original_sizes: list[tuple[int, int]]
    skipped: list[SkippedFile] = field(default_factory=list)
    normalized: bool = True

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return (
            f"ImageBatch({len(self)} images {tuple(self.images.shape[1:])}, "
            f"normalized={self.normalized}, {len(self.skipped)} skipped)"
        )

    def summary(self) -> str:
        """One line per skipped file after a count, for printing under a notebook cell."""
        lines = [f"loaded {len(self)} image(s), skipped {len(self.skipped)}"]
        lines += [f"  skipped {s}" for s in self.skipped]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Step 1: decoding a file safely
# ---------------------------------------------------------------------------------------------

_IMAGE_MAGIC = (
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _sniff(path: Path) -> tuple[str | None, str]:
    """``(image format or None, a description)`` of a file Pillow could not identify."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None, "unreadable"
    for magic, fmt in _IMAGE_MAGIC:
        if head.startswith(magic):
            return fmt, f"it starts like a {fmt} image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP", "it starts like a WebP image"
    probe = head.lstrip()
    for magic, what in _MAGIC:
        if probe.startswith(magic) or (
            magic.startswith(b"ftyp") and head[4 : 4 + len(magic)] == magic
        ):
            return None, what
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return None, "a text file"
    return None, "not a format Pillow recognises"


def _check_file(path: Path) -> None:
    """File-system problems, before any byte is parsed."""
    try:
        st = path.stat()
    except FileNotFoundError:
        hint = "a broken link" if path.is_symlink() else "no such file"
        raise ImageLoadError(
            path, hint, f"check the path and the working folder ({os.getcwd()})"
        ) from None
    except PermissionError:
        raise ImageLoadError(
            path, "permission denied", "make the file readable (chmod u+r)"
        ) from None
    except OSError as e:
        raise ImageLoadError(path, f"cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageLoadError(
            path,
            "is a folder, not an image file",
            "use zfcore.data.load_folder(path, profile) for a folder of images",
        )
    if not stat.S_ISREG(st.st_mode):
        raise ImageLoadError(
            path,
            "is not a regular file (a pipe, socket or device)",
            "pass the path of an image file",
        )
    if st.st_size == 0:
        raise ImageLoadError(
            path, "is empty (0 bytes)", "the download or copy did not finish; fetch the file again"
        )
    ext = path.suffix.lower()
    if ext in _UNSUPPORTED:
        raise ImageLoadError(
            path, f"{_UNSUPPORTED[ext]} are not supported", "convert it to JPEG or PNG first"
        )


def _decode(
    path: Path, max_pixels: int, check_extension: bool, target: int | None
) -> tuple[Image.Image, tuple[int, int]]:
    """Open, check and fully decode the first frame of ``path``; returns it EXIF-oriented and its
    ``(width, height)`` after orientation. ``target`` lets JPEGs decode at a reduced scale (no
    smaller than twice ``target`` on the short side)."""
    if not isinstance(max_pixels, int) or max_pixels < 1:
        raise ImageArgumentError(f"max_pixels must be a positive integer, not {max_pixels!r}")
    _check_file(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise ImageLoadError(path, f"cannot be opened ({e.strerror or e})") from None
    with f, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(f, formats=_ALLOWED_FORMATS)
        except Image.DecompressionBombError as e:
            raise ImageTooLargeError(
                path,
                f"declares too many pixels to decode safely ({e})",
                "if it is a genuine image, shrink it first",
            ) from None
        except UnidentifiedImageError:
            fmt, what = _sniff(path)
            if fmt:
                raise ImageLoadError(
                    path, f"is truncated or corrupt ({what} but its header is unreadable)", _REFETCH
                ) from None
            raise ImageLoadError(
                path,
                f"is not an image ({what})",
                "supported formats: JPEG, PNG, WebP, GIF, BMP, TIFF, PPM"
                + (", AVIF" if "AVIF" in FORMAT_EXTENSIONS else ""),
            ) from None
        except Exception as e:  # header parsers raise SyntaxError, struct.error, ValueError, ...
            raise ImageLoadError(
                path,
                f"is truncated or corrupt: its header is unreadable ({_describe(e)})",
                _REFETCH,
            ) from None

        fmt = img.format or "?"
        ext = path.suffix.lower()
        if (
            check_extension
            and ext in _registered_extensions()
            and ext not in FORMAT_EXTENSIONS.get(fmt, ())
        ):
            good = FORMAT_EXTENSIONS.get(fmt, (f".{fmt.lower()}",))[0]
            raise ImageLoadError(
                path,
                f"is a {fmt} image but its name ends in {path.suffix}",
                f"rename it to {path.with_suffix(good).name} (or pass "
                f"check_extension=False to accept it as it is)",
            )
        w, h = img.size
        if w < 1 or h < 1:
            raise ImageLoadError(path, f"has no pixels (size {w}x{h})", "the file is damaged")
        if w * h > max_pixels:
            raise ImageTooLargeError(
                path,
                f"is {w}x{h} = {w * h / 1e6:.1f} megapixels, over the limit of "
                f"{max_pixels / 1e6:.1f} (a small file that unpacks to that many pixels "
                f"is a decompression bomb)",
                "if it is a genuine image, shrink it first or pass a larger max_pixels",
            )
        try:
            if target and fmt in ("JPEG", "MPO") and min(w, h) >= 4 * target:
                scale = 2 * target / min(w, h)
                img.draft(img.mode, (math.ceil(w * scale), math.ceil(h * scale)))
            img.load()
        except MemoryError:
            raise ImageLoadError(
                path,
                f"needs more memory than is free to decode its {w}x{h} pixels",
                "shrink it first or lower max_pixels",
            ) from None
        except Exception as e:  # OSError("image file is truncated"), EOFError, ValueError, ...
            raise ImageLoadError(
                path, f"is truncated or corrupt ({_describe(e)})", _REFETCH
            ) from None
        before = img.size  # after a JPEG draft: a reduced size, same aspect
        img = _orient(img, path)
    turned = img.size != before  # EXIF orientations 5-8 swap width and height
    return img, ((h, w) if turned else (w, h))


def _registered_extensions() -> frozenset[str]:
    return frozenset(Image.registered_extensions())


def _describe(e: BaseException) -> str:
    msg = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _orient(img: Image.Image, path: "Path | None") -> Image.Image:
    """Apply the EXIF orientation tag; unreadable EXIF is reported and the pixels used as stored."""
    try:
        out = ImageOps.exif_transpose(img)
        return img if out is None else out
    except Exception as e:
        warnings.warn(
            f"{path or 'image'}: EXIF data unreadable ({_describe(e)}); the image is "
            f"used as stored, without rotation",
            stacklevel=3,
        )
        return img


def open_image(
    path: "str | os.PathLike",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    check_extension: bool = True,
    background: Sequence[int] = WHITE,
) -> Image.Image:
    """Decode ``path`` safely, EXIF-orient it and convert it to 8-bit sRGB, at full size: the
    photo as a person sees it (for display beside the model's input).

    Raises :class:`ImageLoadError` naming the file on any problem (see the module docstring).
    """
    p = _as_path(path)
    bg = _check_background(background)
    with _warnings_naming(p):
        img, _ = _decode(p, max_pixels, check_extension, target=None)
        img = _canonical(img, bg, p)
    if img.mode == "F":
        img = Image.fromarray((np.asarray(img) * 255).round().astype(np.uint8), "L")
    return img.convert("RGB")


def _as_path(path: Any) -> Path:
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    raise ImageArgumentTypeError(
        f"expected a file path (str or pathlib.Path), got {type(path).__name__}; "
        f"for arrays and tensors use zfcore.data.images.to_model_input"
    )


# ---------------------------------------------------------------------------------------------
# Step 3: colour
# ---------------------------------------------------------------------------------------------

_SRGB = None


def _srgb_profile():
    global _SRGB
    if _SRGB is None:
        from PIL import ImageCms

        _SRGB = ImageCms.createProfile("sRGB")
    return _SRGB


def _to_srgb(img: Image.Image, path: "Path | None") -> Image.Image:
    """Convert an image with an embedded ICC profile to sRGB (RGB, RGBA or CMYK sources)."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK"):
        return img
    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(img, src, _srgb_profile(), outputMode=out_mode)
    except Exception as e:
        warnings.warn(
            f"{path or 'image'}: its embedded colour profile could not be applied "
            f"({_describe(e)}); colours are used as stored",
            stacklevel=4,
        )
        return img


def _canonical(
    img: Image.Image, background: tuple[int, int, int], path: "Path | None"
) -> Image.Image:
    """One of three modes: ``"L"`` (8-bit gray), ``"RGB"`` (8-bit), ``"F"`` (float gray in [0,1]).

    Transparency is composited over ``background``; 16-bit and 32-bit images keep their
    precision as ``"F"``.
    """
    mode = img.mode
    if mode in ("1", "L"):
        return img.convert("L")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_scale_deep(np.asarray(img)), mode="F")
    if mode == "P":
        mode = "RGBA" if "transparency" in img.info else "RGB"
        img = img.convert(mode)
    elif mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
        mode = "RGBA"
    elif mode == "LAB":
        try:
            from PIL import ImageCms

            t = ImageCms.buildTransform(
                ImageCms.createProfile("LAB"), _srgb_profile(), "LAB", "RGB"
            )
            return ImageCms.applyTransform(img, t)
        except Exception as e:
            raise ImageLoadError(
                path,
                f"uses the LAB colour space, which could not be converted ({_describe(e)})",
                "save it as sRGB",
            ) from None
    img = _to_srgb(img, path)
    if img.mode == "RGBA":
        base = Image.new("RGBA", img.size, tuple(background) + (255,))
        return Image.alpha_composite(base, img).convert("RGB")
    if img.mode != "RGB":
        try:
            img = img.convert("RGB")
        except Exception as e:
            raise ImageLoadError(
                path,
                f"has the unsupported pixel format {img.mode!r} ({_describe(e)})",
                "convert it to 8-bit RGB",
            ) from None
    return img


def _scale_deep(a: np.ndarray) -> np.ndarray:
    """16-bit, 32-bit integer and float pixels to float32 in [0, 1].

    Unsigned 16-bit data (the common case: PNG/TIFF from scanners and microscopes) is divided by
    65535; float data already in [0, 1] is kept; anything else is stretched from its own minimum
    to its maximum (there is no convention to follow).
    """
    a = np.nan_to_num(np.asarray(a, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if a.size == 0:
        return a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    if 0.0 <= lo and hi <= 1.0:
        return a.astype(np.float32)
    if 0.0 <= lo and hi <= 65535.0:
        return (a / 65535.0).astype(np.float32)
    return ((a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Step 4: geometry, shared by files, Pillow images and arrays
# ---------------------------------------------------------------------------------------------


def _centre_box(w: int, h: int) -> tuple[int, int, int, int]:
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return left, top, left + s, top + s


def _pil_to_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """Canonical Pillow image -> its centre square as a ``(C, s, s)`` float tensor in [0, 1].

    A square much larger than ``size`` is first box-averaged by an integer factor in Pillow
    (``Image.reduce``), keeping at least twice ``size`` pixels, so a 100-megapixel photo never
    becomes a 1.2 GB float array; the final resize happens in :func:`_square_resize`.
    """
    box = _centre_box(*img.size)
    s = box[2] - box[0]
    k = s // (2 * size) if s >= 4 * size else 1
    if k >= 2:
        t = (s // k) * k  # a whole number of k x k blocks, still centred
        left, top = box[0] + (s - t) // 2, box[1] + (s - t) // 2
        img = img.reduce(k, box=(left, top, left + t, top + t))
    else:
        img = img.crop(box)
    a = np.array(img, dtype=np.float32)  # a writable copy
    if img.mode != "F":
        a /= 255.0
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)


def _square_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(3, H, W)`` in [0, 1] -> its centre square resized to ``(3, size, size)``: the paper's
    "resize the short side, centre crop" (section 3) in one step, antialiased when shrinking."""
    _, h, w = x.shape
    left, top, right, bottom = _centre_box(w, h)
    x = x[:, top:bottom, left:right]
    if x.shape[-1] != size:
        x = F.interpolate(
            x.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=False, antialias=True
        ).squeeze(0)
    return x.clamp(0.0, 1.0).contiguous()


def _to_rgb(x: torch.Tensor, background: tuple[int, int, int]) -> torch.Tensor:
    """``(C, H, W)`` in [0, 1] with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) -> RGB."""
    c = x.shape[0]
    if c in (2, 4):
        alpha = x[-1:]
        bg = torch.tensor(background, dtype=x.dtype).view(3, 1, 1) / 255.0
        colour = x[:-1].expand(3, -1, -1) if c == 2 else x[:3]
        return colour * alpha + bg * (1 - alpha)
    return x.expand(3, -1, -1) if c == 1 else x


# ---------------------------------------------------------------------------------------------
# Step 5: normalisation
# ---------------------------------------------------------------------------------------------


def _normalize(images01: torch.Tensor, profile: Profile) -> torch.Tensor:
    return normalize(images01, profile)  # zfcore.data.normalize: the one every data set uses


def _finish(x01: torch.Tensor, profile: Profile, normalized: bool) -> torch.Tensor:
    x01 = x01.to(torch.float32)
    return _normalize(x01.unsqueeze(0), profile).squeeze(0) if normalized else x01


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def _resolve(profile: "str | Profile") -> Profile:
    return get_profile(profile)


def _check_background(background: Any) -> tuple[int, int, int]:
    try:
        bg = tuple(int(v) for v in background)
    except Exception:
        bg = ()
    if len(bg) != 3 or not all(0 <= v <= 255 for v in bg):
        raise ImageArgumentError(
            f"background must be three integers 0-255 (R, G, B), not {background!r}"
        )
    return bg  # type: ignore[return-value]


def _load_01(
    path: Path, size: int, max_pixels: int, check_extension: bool, background: tuple[int, int, int]
) -> tuple[torch.Tensor, tuple[int, int]]:
    with _warnings_naming(path):
        img, original = _decode(path, max_pixels, check_extension, target=size)
        img = _canonical(img, background, path)
    return _square_resize(_to_rgb(_pil_to_tensor(img, size), background), size), original


@contextlib.contextmanager
def _warnings_naming(path: Path):
    """Re-issue Pillow's warnings about a file ("Corrupt EXIF data", "Tag data larger than
    file", ...) with the file's name in front, so a folder's warnings say which file they mean."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            pending = list(caught)
    for w in pending:
        msg = str(w.message)
        if not msg.startswith(str(path)):
            msg = f"{path}: {msg}"
        warnings.warn(
            msg, w.category if issubclass(w.category, UserWarning) else UserWarning, stacklevel=4
        )


def load_image(
    path: "str | os.PathLike",
    profile: "str | Profile" = "mini",
    *,
    normalized: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    check_extension: bool = True,
    background: Sequence[int] = WHITE,
) -> torch.Tensor:
    """One photo as the network's input: a ``(3, S, S)`` float32 tensor, ``S = profile.image_size``.

    JPEG, PNG, WebP, GIF, BMP, TIFF and PPM in any pixel format (grayscale, RGBA, palette, CMYK,
    16-bit, EXIF-rotated, tiny or huge) go through the pipeline of the module docstring. With
    ``normalized=False`` the result is in ``[0, 1]`` (for display). Raises
    :class:`ImageLoadError` naming the file for unreadable, truncated, empty, non-image or
    wrongly named files, and :class:`ImageTooLargeError` above ``max_pixels``.

    >>> x = load_image("my_cat.jpg", "mini")           # doctest: +SKIP
    >>> model(x.unsqueeze(0)).softmax(1)                # doctest: +SKIP
    """
    p = _resolve(profile)
    bg = _check_background(background)
    x01, _ = _load_01(_as_path(path), p.image_size, max_pixels, check_extension, bg)
    return _finish(x01, p, normalized)


def to_model_input(
    image: Any,
    profile: "str | Profile" = "mini",
    *,
    normalized: bool = True,
    background: Sequence[int] = WHITE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """An in-memory image as the network's input ``(3, S, S)``, exactly like :func:`load_image`.

    ``image`` may be a Pillow image; a numpy array ``(H, W)`` or ``(H, W, C)`` (scikit-image's
    layout) or a torch tensor ``(H, W)`` or ``(C, H, W)`` (torch's layout), with C = 1, 2
    (gray + alpha), 3 or 4 (RGBA); of dtype ``uint8`` (0-255), ``uint16`` (0-65535), ``bool``, or
    float with values in ``[0, 1]``; or a file path (then it is :func:`load_image`).
    Raises :class:`ImageArrayError` for anything else, naming the problem and the fix.
    """
    p = _resolve(profile)
    bg = _check_background(background)
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, p, normalized=normalized, background=bg, max_pixels=max_pixels)
    if isinstance(image, Image.Image):
        w, h = image.size
        if w < 1 or h < 1 or w * h > max_pixels:
            raise ImageArrayError(f"image of size {w}x{h}: need between 1 and {max_pixels} pixels")
        try:
            image.load()
        except Exception as e:
            raise ImageArrayError(f"the PIL image cannot be decoded ({_describe(e)})") from None
        img = _canonical(_orient(image, None), bg, None)
        x01 = _square_resize(_to_rgb(_pil_to_tensor(img, p.image_size), bg), p.image_size)
        return _finish(x01, p, normalized)
    x = _array_to_chw01(image, max_pixels)
    return _finish(_square_resize(_to_rgb(x, bg), p.image_size), p, normalized)


def _array_to_chw01(image: Any, max_pixels: int) -> torch.Tensor:
    """Validate an array/tensor image and return it as ``(C, H, W)`` float32 in [0, 1]."""
    if isinstance(image, torch.Tensor):
        layout, t = "torch (C, H, W)", image.detach().cpu()
        if t.dim() == 3 and t.shape[0] not in (1, 2, 3, 4) and t.shape[-1] in (1, 2, 3, 4):
            raise ImageArrayError(
                f"tensor of shape {tuple(t.shape)} looks channels-last; torch "
                f"images are (C, H, W): use t.permute(2, 0, 1)"
            )
        if t.dim() == 2:
            t = t.unsqueeze(0)
        if t.dim() != 3 or t.shape[0] not in (1, 2, 3, 4):
            raise ImageArrayError(
                f"tensor of shape {tuple(image.shape)} is not an image: expected "
                f"(H, W) or (C, H, W) with C = 1, 2, 3 or 4"
                + ("; for a batch, pass one image at a time" if t.dim() == 4 else "")
            )
        if t.is_floating_point():
            t = t.to(torch.float64)
        if t.is_complex():
            raise ImageArrayError(
                f"tensor of dtype {t.dtype} is not an image: use uint8 (0-255) or float in [0, 1]"
            )
        a = t.numpy()
        chw = a
    elif isinstance(image, np.ndarray):
        layout, a = "numpy (H, W, C)", image
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3 or a.shape[-1] not in (1, 2, 3, 4):
            hint = (
                "; numpy images are (H, W, C): use np.moveaxis(a, 0, -1)"
                if a.ndim == 3 and a.shape[0] in (1, 3, 4)
                else ""
            )
            raise ImageArrayError(
                f"array of shape {image.shape} is not an image: expected (H, W) "
                f"or (H, W, C) with C = 1, 2, 3 or 4{hint}"
            )
        chw = np.moveaxis(a, -1, 0)
    else:
        raise ImageArgumentTypeError(
            f"expected an image (file path, PIL.Image, numpy array or torch tensor), "
            f"got {type(image).__name__}"
        )
    c, h, w = chw.shape
    if h < 1 or w < 1:
        raise ImageArrayError(f"{layout} image of shape {tuple(image.shape)} has no pixels")
    if h * w > max_pixels:
        raise ImageArrayError(f"{layout} image of {h}x{w} pixels is over max_pixels={max_pixels}")
    dt = chw.dtype
    if dt == np.bool_:
        f = chw.astype(np.float32)
    elif dt == np.uint8:
        f = chw.astype(np.float32) / 255.0
    elif dt == np.uint16:
        f = chw.astype(np.float32) / 65535.0
    elif np.issubdtype(dt, np.floating):
        if not np.isfinite(chw).all():
            raise ImageArrayError(
                f"{layout} float image holds NaN or infinite values; replace them "
                f"(np.nan_to_num) first"
            )
        lo, hi = float(chw.min()), float(chw.max())
        if lo < 0.0 or hi > 1.0:
            fix = "divide by 255" if hi <= 255.0 and lo >= 0.0 else "rescale it to [0, 1]"
            raise ImageArrayError(
                f"{layout} float image has values in [{lo:.4g}, {hi:.4g}], "
                f"expected [0, 1]: {fix} (a normalised tensor must be "
                f"denormalised first)"
            )
        f = chw.astype(np.float32)
    elif np.issubdtype(dt, np.integer):
        raise ImageArrayError(
            f"{layout} image of dtype {dt} is ambiguous: convert it to uint8 "
            f"(0-255), uint16 (0-65535) or float in [0, 1]"
        )
    else:
        raise ImageArrayError(
            f"{layout} image of dtype {dt} is not an image: use uint8 (0-255) or float in [0, 1]"
        )
    return torch.from_numpy(np.ascontiguousarray(f))


# ---------------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------------


def list_images(
    folder: "str | os.PathLike", *, recursive: bool = False
) -> tuple[list[Path], list[SkippedFile]]:
    """The files of ``folder`` named like images (sorted), and every other entry with a reason.

    Nothing is decoded here; :func:`load_folder` / :func:`iter_folder` decode and may skip more.
    """
    root = _as_path(folder)
    if not root.exists():
        raise ImageLoadError(
            root, "no such folder", f"check the path and the working folder ({os.getcwd()})"
        )
    if not root.is_dir():
        raise ImageLoadError(
            root,
            "is a file, not a folder",
            "use zfcore.data.load_image(path, profile) for one image",
        )
    entries = sorted(root.rglob("*") if recursive else root.iterdir())
    good: list[Path] = []
    skipped: list[SkippedFile] = []
    for p in entries:
        ext = p.suffix.lower()
        if p.is_dir():
            if not recursive:
                skipped.append(SkippedFile(p, "is a subfolder (pass recursive=True to include it)"))
        elif ext in IMAGE_EXTENSIONS:
            good.append(p)
        elif ext in _UNSUPPORTED:
            skipped.append(
                SkippedFile(
                    p, f"{_UNSUPPORTED[ext]} are not supported; convert it to JPEG or PNG first"
                )
            )
        else:
            skipped.append(
                SkippedFile(
                    p,
                    f"not an image file name ({ext or 'no extension'}); "
                    f"rename it if it is an image",
                )
            )
    return good, skipped


def iter_folder(
    folder: "str | os.PathLike",
    profile: "str | Profile" = "mini",
    *,
    batch_size: int = 64,
    recursive: bool = False,
    normalized: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    check_extension: bool = True,
    background: Sequence[int] = WHITE,
    progress: bool | None = None,
) -> Iterator[ImageBatch]:
    """Stream a folder of photos as :class:`ImageBatch` es of at most ``batch_size`` images.

    Memory stays bounded by one batch however many files the folder holds (feature extraction
    and top-9 mining over a user's folder use this). Each batch's ``skipped`` lists the files
    skipped since the previous batch; the last batch may hold no images, only skipped files.
    """
    p = _resolve(profile)
    bg = _check_background(background)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ImageArgumentError(f"batch_size must be a positive integer, not {batch_size!r}")
    files, skipped = list_images(folder, recursive=recursive)
    return _stream(
        Path(folder),
        files,
        skipped,
        p,
        batch_size,
        normalized,
        max_pixels,
        check_extension,
        bg,
        progress,
    )


def _stream(
    folder: Path,
    files: list[Path],
    skipped: list[SkippedFile],
    p: Profile,
    batch_size: int,
    normalized: bool,
    max_pixels: int,
    check_extension: bool,
    bg: tuple[int, int, int],
    progress: bool | None,
) -> Iterator[ImageBatch]:
    """Decode ``files`` into preallocated batches of ``batch_size`` (each image normalised as it
    arrives), so the peak memory is one batch, not one batch plus a copy."""
    from tqdm.auto import tqdm

    show = len(files) > 200 if progress is None else bool(progress)
    S = p.image_size
    left = len(files)

    def fresh():
        return torch.empty(min(batch_size, max(left, 1)), 3, S, S), [], [], []

    buf, names, paths, sizes = fresh()
    for f in tqdm(files, desc=f"images in {folder.name}", unit="img", disable=not show):
        left -= 1
        try:
            x01, size = _load_01(f, S, max_pixels, check_extension, bg)
        except ImageLoadError as e:
            skipped.append(SkippedFile(f, e.problem + (f". {e.fix}" if e.fix else "")))
            continue
        buf[len(names)] = _finish(x01, p, normalized)
        names.append(f.name)
        paths.append(f)
        sizes.append(size)
        if len(names) == len(buf):
            yield ImageBatch(buf, names, paths, sizes, skipped, normalized)
            skipped = []
            buf, names, paths, sizes = fresh()
    if names or skipped:
        yield ImageBatch(buf[: len(names)], names, paths, sizes, skipped, normalized)


class PhotoFolder(torch.utils.data.Dataset):
    """A folder of photos as a ``Dataset`` of ``(normalised image, label)``, decoded on access,
    for top-9 mining (:func:`zfcore.mining.mine_topk`) and the explorer, which read images
    back by index (:class:`PhotoStream` streams a folder of any size once, in bounded memory).

    Photos sorted into subfolders (``folder/<class>/*.jpg``, as ImageNet and Imagenette are) are
    labelled by their subfolder (``classes`` lists them); photos directly in ``folder`` have label
    ``-1`` (unknown). Files that are not images are listed in ``skipped``; ``names[i]`` is image
    ``i``'s path inside the folder."""

    def __init__(self, folder: "str | os.PathLike", profile: "str | Profile"):
        self.profile = get_profile(profile)
        self.root = Path(folder)
        self.paths, self.skipped = list_images(folder, recursive=True)
        if not self.paths:
            raise ImageLoadError(self.root, "holds no image file", "add JPEG/PNG photos to it")
        rel = [p.relative_to(self.root) for p in self.paths]
        self.names = [str(r) for r in rel]
        self.classes = sorted({r.parts[0] for r in rel if len(r.parts) > 1})
        index = {c: i for i, c in enumerate(self.classes)}
        self._labels = torch.tensor(
            [index[r.parts[0]] if len(r.parts) > 1 else -1 for r in rel], dtype=torch.long
        )

    def __len__(self) -> int:
        return len(self.paths)

    def labels(self) -> torch.Tensor:
        """``(N,)`` class of each photo (its subfolder), ``-1`` where unknown."""
        return self._labels.clone()

    def __getitem__(self, i: int):
        return load_image(self.paths[i], self.profile), int(self._labels[i])


class PhotoStream(torch.utils.data.IterableDataset):
    """A folder of photos as a stream of ``(images, labels)`` batches, in bounded memory.

    For top-9 mining and feature extraction over a user's folder of any size:
    ``mine_topk(model, PhotoStream(folder, profile))`` or
    ``extract_features(model, DataLoader(PhotoStream(folder, profile), batch_size=None))``
    (keep ``num_workers=0``: each worker would stream the whole folder). ``images`` are
    ``(B, 3, S, S)`` normalised, ``labels`` are ``-1`` (unknown). Image ``i`` of the stream is
    ``self.paths[i]``; ``self.skipped`` lists the files left out so far, with reasons. Both are
    rebuilt on each pass.
    """

    def __init__(
        self,
        folder: "str | os.PathLike",
        profile: "str | Profile" = "mini",
        *,
        batch_size: int = 64,
        recursive: bool = False,
        **options: Any,
    ):
        super().__init__()
        unknown = set(options) - {"max_pixels", "check_extension", "background", "progress"}
        if unknown:
            raise ImageArgumentTypeError(f"PhotoStream got unexpected option(s) {sorted(unknown)}")
        # validates everything now, so a bad argument fails here and not inside a DataLoader
        iter_folder(folder, profile, batch_size=batch_size, recursive=recursive, **options)
        self.folder, self.profile, self.batch_size = Path(folder), _resolve(profile), batch_size
        self.recursive, self.options = recursive, options
        self.paths: list[Path] = []
        self.skipped: list[SkippedFile] = []

    def __iter__(self):
        self.paths, self.skipped = [], []
        for b in iter_folder(
            self.folder,
            self.profile,
            batch_size=self.batch_size,
            recursive=self.recursive,
            **self.options,
        ):
            self.skipped += b.skipped
            if len(b):
                self.paths += b.paths
                yield b.images, torch.full((len(b),), -1, dtype=torch.long)


def load_folder(
    folder: "str | os.PathLike",
    profile: "str | Profile" = "mini",
    *,
    recursive: bool = False,
    normalized: bool = True,
    max_images: int = 4096,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    check_extension: bool = True,
    background: Sequence[int] = WHITE,
    progress: bool | None = None,
) -> ImageBatch:
    """Every photo of ``folder`` as one :class:`ImageBatch`; bad files are skipped and listed.

    ``batch.images`` is ``(N, 3, S, S)``; ``batch.skipped`` names every file left out and why
    (print ``batch.summary()``). Raises :class:`ImageLoadError` when the folder is missing or
    holds no usable image, and ``ValueError`` when it holds more than ``max_images`` image files
    (all of them in memory at once): use :func:`iter_folder` to stream a large folder.
    """
    p = _resolve(profile)
    bg = _check_background(background)
    files, skipped = list_images(folder, recursive=recursive)
    if len(files) > max_images:
        raise ImageArgumentError(
            f"{folder}: {len(files)} image files, more than max_images={max_images} "
            f"to hold in memory at once; stream it with "
            f"zfcore.data.images.iter_folder(folder, profile, batch_size=64) or "
            f"raise max_images"
        )
    batches = list(
        _stream(
            Path(folder),
            files,
            skipped,
            p,
            max(1, len(files)),
            normalized,
            max_pixels,
            check_extension,
            bg,
            progress,
        )
    )
    skipped = [s for b in batches for s in b.skipped]
    loaded = [b for b in batches if len(b)]
    if not loaded:
        listing = "; ".join(str(s) for s in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        raise ImageLoadError(
            Path(folder),
            "holds no usable image"
            + (f" (skipped {len(skipped)}: {listing})" if skipped else " (it is empty)"),
            "add JPEG/PNG/WebP photos to it",
        )
    b = loaded[0]
    return ImageBatch(b.images, b.names, b.paths, b.original_sizes, skipped, normalized)


# ---------------------------------------------------------------------------------------------
# scikit-image's bundled photos: offline sample photos for the pretrained-model notebooks
# ---------------------------------------------------------------------------------------------

#: Sample photo name -> the ``skimage.data`` function that returns it (bundled, no download).
SAMPLE_PHOTOS: dict[str, str] = {
    "cat": "chelsea",
    "astronaut": "astronaut",
    "coffee": "coffee",
    "rocket": "rocket",
    "motorcycle": "stereo_motorcycle",
}
#: ImageNet class names (as in torchvision's ``weights.meta["categories"]``) that count as a
#: correct label for each sample photo (for p(correct class) in the occlusion experiment, Fig. 7).
SAMPLE_PHOTO_CLASSES: dict[str, tuple[str, ...]] = {
    "cat": ("tabby", "tiger cat", "Egyptian cat"),
    "astronaut": (),  # no ImageNet class: a person in a space suit
    "coffee": ("espresso", "cup", "coffee mug"),
    "rocket": ("missile", "projectile", "space shuttle"),
    "motorcycle": ("moped", "motor scooter", "crash helmet"),
}


def sample_photos(
    profile: "str | Profile" = "mini",
    names: "Sequence[str] | None" = None,
    *,
    normalized: bool = True,
) -> ImageBatch:
    """scikit-image's bundled photos (cat, astronaut, coffee, rocket, motorcycle) as an
    :class:`ImageBatch`, through the same pipeline as a user's photo. Offline: the files ship
    with scikit-image."""
    import skimage.data as skd

    p = _resolve(profile)
    if names is None:
        names = list(SAMPLE_PHOTOS)
    elif isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in SAMPLE_PHOTOS]
    if unknown:
        raise ImageArgumentError(
            f"unknown sample photo(s) {unknown}: choose from {sorted(SAMPLE_PHOTOS)}"
        )
    xs, sizes = [], []
    for n in names:
        a = getattr(skd, SAMPLE_PHOTOS[n])()
        a = a[0] if isinstance(a, tuple) else a  # stereo_motorcycle: (left, right, disparity)
        xs.append(to_model_input(a, p, normalized=False))
        sizes.append((int(a.shape[1]), int(a.shape[0])))
    x01 = torch.stack(xs)
    images = _normalize(x01, p) if normalized else x01
    return ImageBatch(images, list(names), [None] * len(names), sizes, [], normalized)


def photos_first(
    photos: "Sequence[str | os.PathLike]",
    profile: "str | Profile" = "mini",
    n: int = 5,
    *,
    normalized: bool = True,
) -> ImageBatch:
    """The user's ``photos`` first, then scikit-image's sample photos filling up to ``n`` images.

    The pretrained-model figures (Fig. 5, Fig. 7) are drawn on "a few images": every photo the
    user gives is kept, in the order given (so there may be more than ``n``), and the bundled
    samples only fill the remaining places. ``names`` holds the file names (user photos) and the
    sample names; ``paths`` is ``None`` for the samples. A photo that cannot be read raises
    :class:`ImageLoadError` naming it.
    """
    if isinstance(photos, (str, os.PathLike)):
        photos = [photos]
    if not isinstance(photos, (list, tuple)):
        raise ImageArgumentTypeError(
            f"photos must be a list of image paths, not {type(photos).__name__}"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ImageArgumentError(f"n must be a non-negative int (images to show), not {n!r}")
    p = _resolve(profile)
    xs, names, paths, sizes = [], [], [], []
    for path in photos:
        path = _as_path(path)
        x01, original = _load_01(path, p.image_size, DEFAULT_MAX_PIXELS, True, WHITE)
        xs.append(_finish(x01, p, normalized))
        sizes.append(tuple(original))
        names.append(path.name)
        paths.append(path)
    fill = max(0, n - len(xs))
    if fill:
        chosen = list(SAMPLE_PHOTOS)[:fill]
        samples = sample_photos(p, chosen, normalized=normalized)
        xs += list(samples.images)
        names += samples.names
        paths += samples.paths
        sizes += samples.original_sizes
    if not xs:
        raise ImageArgumentError("no images: give photos or n >= 1")
    return ImageBatch(torch.stack(xs), names, paths, sizes, [], normalized)
