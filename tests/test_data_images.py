"""The user-photo loader (zfcore.data.images): every format and pixel layout people have, one
pipeline (resize the short side, centre crop, normalise), and a clear error for every bad file.

Expected values come from independent computations: hand-built test patterns, a PNG encoder
that does not use Pillow (tests/helpers/imagefiles.py), the EXIF specification's orientation
table, the naive CMYK formula and Pillow's own float resize.
"""

import os
import tracemalloc

import numpy as np
import pytest
import torch
from helpers.imagefiles import (
    BLUE,
    GREEN,
    RED,
    YELLOW,
    bomb_png,
    cmyk_to_rgb,
    exif_photo,
    gradient,
    pil_bytes,
    png_bytes,
    quadrants,
    sample_files,
    write_png,
)
from PIL import Image

from zfcore.data import images as I
from zfcore.data import normalize
from zfcore.profiles import get_profile

TINY = get_profile("tiny")
S = TINY.image_size


def load01(path, **kw):
    return I.load_image(path, "tiny", normalized=False, **kw)


def colour_at(x, row, col):
    return tuple(float(v) for v in x[:, row, col])


def assert_colour(x, row, col, rgb255, atol=0.03):
    np.testing.assert_allclose(colour_at(x, row, col), np.array(rgb255) / 255, atol=atol)


# --- one pipeline -------------------------------------------------------------------------------


def test_every_supported_format_loads_to_the_same_input(tmp_path):
    files = sample_files(tmp_path)
    ref = load01(files["rgb.png"])
    assert ref.shape == (3, S, S) and ref.dtype == torch.float32
    for name, path in files.items():
        x = load01(path)
        assert x.shape == (3, S, S), name
        assert float(x.min()) >= 0 and float(x.max()) <= 1, name
        if name.startswith("rgb"):
            err = (x - ref).abs()
            if name.endswith(".jpg"):  # lossy: close on average
                assert float(err.mean()) < 0.02, name
            else:
                assert float(err.max()) < 1e-6, name


def test_file_and_array_take_exactly_the_same_path(tmp_path):
    a = gradient(50, 80)
    x_file = load01(write_png(tmp_path / "g.png", a))  # encoded without Pillow
    x_arr = I.to_model_input(a, "tiny", normalized=False)
    x_pil = I.to_model_input(Image.fromarray(a), "tiny", normalized=False)
    x_t = I.to_model_input(torch.from_numpy(a).permute(2, 0, 1), "tiny", normalized=False)
    for other in (x_arr, x_pil, x_t):
        torch.testing.assert_close(other, x_file, atol=0, rtol=0)
    assert torch.equal(load01(tmp_path / "g.png"), x_file)  # the same every time


def test_normalised_output_is_zfcore_data_normalize():
    a = gradient(64, 64)
    for profile in ("tiny", "imagenet"):
        x01 = I.to_model_input(a, profile, normalized=False)
        torch.testing.assert_close(I.to_model_input(a, profile), normalize(x01, profile))


def test_centre_crop_by_hand():
    # left quarter red, middle half green, right quarter blue: the centre square is all green
    a = np.zeros((S, 2 * S, 3), np.uint8)
    a[:, : S // 2] = RED
    a[:, S // 2 : 3 * S // 2] = GREEN
    a[:, 3 * S // 2 :] = BLUE
    x = I.to_model_input(a, "tiny", normalized=False)
    expected = torch.tensor(GREEN, dtype=torch.float32).view(3, 1, 1) / 255
    torch.testing.assert_close(x, expected.expand(3, S, S))
    # and for a portrait image the centre is taken vertically
    torch.testing.assert_close(
        I.to_model_input(a.transpose(1, 0, 2), "tiny", normalized=False), expected.expand(3, S, S)
    )


@pytest.mark.parametrize("h,w", [(200, 300), (30, 45), (7, 5), (640, 480)])
def test_resize_matches_pillows_float_resize(h, w):
    """Short side to S and centre crop, against Pillow's bilinear resize of each channel in
    float mode (an independent implementation of the same antialiased filter)."""
    a = gradient(h, w, seed=h)
    x = I.to_model_input(a, "tiny", normalized=False)
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = a[top : top + s, left : left + s].astype(np.float32) / 255
    ref = np.stack(
        [
            np.asarray(Image.fromarray(crop[..., c], "F").resize((S, S), Image.BILINEAR))
            for c in range(3)
        ]
    )
    np.testing.assert_allclose(x.numpy(), np.clip(ref, 0, 1), atol=2e-3)


@pytest.mark.slow
def test_huge_photo_is_shrunk_in_bounded_memory(tmp_path):
    a = np.repeat(np.repeat(quadrants(60, 80), 25, 0), 25, 1)  # 2000 x 1500 pixels
    p = tmp_path / "big.jpg"
    p.write_bytes(pil_bytes(Image.fromarray(a), "JPEG", quality=90))
    q = tmp_path / "big.png"
    q.write_bytes(pil_bytes(Image.fromarray(a), "PNG", compress_level=1))
    tracemalloc.start()
    x = load01(p)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < a.nbytes / 4, "a 3-megapixel JPEG is decoded at reduced scale (draft)"
    for img in (x, load01(q)):
        for (r, c), col in {
            (S // 4, S // 4): RED,
            (S // 4, 3 * S // 4): GREEN,
            (3 * S // 4, S // 4): BLUE,
            (3 * S // 4, 3 * S // 4): YELLOW,
        }.items():
            assert_colour(img, r, c, col, atol=0.05)
    assert I.load_folder(tmp_path, "tiny").original_sizes == [(2000, 1500)] * 2
    assert I.open_image(p).size == (2000, 1500)
    # the integer box-reduction of a huge PNG agrees with the exact antialiased resize
    g = gradient(1500, 2000, wavelength=20)
    q.write_bytes(pil_bytes(Image.fromarray(g), "PNG", compress_level=1))
    err = (load01(q) - I.to_model_input(g, "tiny", normalized=False)).abs()
    assert float(err.mean()) < 0.005 and float(err.max()) < 0.05


@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (3, 2)])
def test_tiny_images_are_upscaled(tmp_path, h, w):
    a = np.full((h, w, 3), (10, 120, 250), np.uint8)
    x = load01(write_png(tmp_path / "t.png", a))
    assert x.shape == (3, S, S)
    assert_colour(x, 0, 0, (10, 120, 250), atol=1e-6)
    assert_colour(x, S - 1, S - 1, (10, 120, 250), atol=1e-6)


# --- pixel formats -------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation(tmp_path, orientation, fmt):
    upright = quadrants(48, 64)
    p = tmp_path / f"o{orientation}.{'jpg' if fmt == 'JPEG' else 'png'}"
    p.write_bytes(exif_photo(upright, orientation, fmt))
    x = load01(p)
    assert I.load_folder(tmp_path, "tiny").original_sizes == [(64, 48)]
    assert I.open_image(p).size == (64, 48)
    for (r, c), col in {
        (S // 4, S // 4): RED,
        (S // 4, 3 * S // 4): GREEN,
        (3 * S // 4, S // 4): BLUE,
        (3 * S // 4, 3 * S // 4): YELLOW,
    }.items():
        assert_colour(x, r, c, col, atol=0.06)


def test_grayscale_bilevel_and_gray_alpha(tmp_path):
    g = np.linspace(0, 255, 64 * 64).reshape(64, 64).astype(np.uint8)
    x = load01(write_png(tmp_path / "g.png", g))
    torch.testing.assert_close(x[0], x[1]), torch.testing.assert_close(x[1], x[2])
    torch.testing.assert_close(x[0], torch.from_numpy(g).float() / 255)
    bw = Image.fromarray(g > 127).convert("1")
    bw.save(tmp_path / "bw.png")
    xb = load01(tmp_path / "bw.png")
    assert set(torch.unique(xb).tolist()) <= {0.0, 1.0}
    la = Image.fromarray(np.stack([g, np.full_like(g, 0)], -1), "LA")  # fully transparent
    la.save(tmp_path / "la.png")
    torch.testing.assert_close(load01(tmp_path / "la.png"), torch.ones(3, S, S))


def test_rgba_is_composited_over_the_background(tmp_path):
    a = np.zeros((S, S, 4), np.uint8)
    a[..., :3] = RED
    a[:, : S // 2, 3] = 0  # left half transparent
    a[:, S // 2 :, 3] = 128  # right half half-transparent
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    x = load01(tmp_path / "a.png")
    assert_colour(x, 5, 5, (255, 255, 255), atol=1e-6)
    half = 128 / 255
    expected = [(c / 255) * half + 1 * (1 - half) for c in RED]
    np.testing.assert_allclose(colour_at(x, 5, S - 5), expected, atol=1 / 255)
    xb = load01(tmp_path / "a.png", background=(0, 0, 0))
    assert_colour(xb, 5, 5, (0, 0, 0), atol=1e-6)
    # the same through the array path, in float
    torch.testing.assert_close(
        I.to_model_input(a, "tiny", normalized=False), x, atol=1 / 255, rtol=0
    )


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (S, S), 0)
    img.putpalette([*RED, *GREEN] + [0] * 762)
    img.paste(1, (0, 0, S // 2, S))
    img.save(tmp_path / "p.png", transparency=0)  # index 0 (red) is transparent
    x = load01(tmp_path / "p.png")
    assert_colour(x, 5, 5, GREEN, atol=1e-6)
    assert_colour(x, 5, S - 5, (255, 255, 255), atol=1e-6)
    img.save(tmp_path / "p.gif")
    assert_colour(load01(tmp_path / "p.gif"), 5, 5, GREEN, atol=1e-6)


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("TIFF", "tif")])
def test_cmyk(tmp_path, fmt, ext):
    cmyk = [(0, 255, 255, 0), (255, 0, 255, 60), (30, 90, 200, 120)]
    img = Image.new("CMYK", (3 * S, S))
    for i, v in enumerate(cmyk):
        img.paste(v, (i * S, 0, (i + 1) * S, S))
    p = tmp_path / f"c.{ext}"
    img.save(p, fmt, **({"quality": 98} if fmt == "JPEG" else {}))
    x = I.load_image(p, "tiny", normalized=False)
    np.testing.assert_allclose(colour_at(x, S // 2, S // 2), cmyk_to_rgb(*cmyk[1]), atol=0.03)


def test_sixteen_bit_gray_and_rgb_keep_their_values(tmp_path):
    v = np.linspace(0, 65535, S * S).reshape(S, S).astype(np.uint16)
    x = load01(write_png(tmp_path / "g16.png", v, 16))
    torch.testing.assert_close(x[0], torch.from_numpy(v.astype(np.float32) / 65535))
    # finer than 8 bits: neighbouring 16-bit levels stay distinct
    fine = np.full((S, S), 1000, np.uint16)
    fine[:, S // 2 :] = 1001
    xf = load01(write_png(tmp_path / "fine.png", fine, 16))
    assert float(xf[0, 0, -1] - xf[0, 0, 0]) == pytest.approx(1 / 65535, rel=1e-3)
    rgb16 = np.zeros((S, S, 3), np.uint16)
    rgb16[...] = (65535, 32768, 0)
    x3 = load01(write_png(tmp_path / "rgb16.png", rgb16, 16))
    np.testing.assert_allclose(colour_at(x3, 3, 3), (1.0, 0.5, 0.0), atol=1 / 255)
    Image.fromarray(v).save(tmp_path / "g16.tif")
    torch.testing.assert_close(load01(tmp_path / "g16.tif"), x)


def test_float_and_16bit_arrays():
    v = np.linspace(0, 1, S * S, dtype=np.float32).reshape(S, S)
    torch.testing.assert_close(
        I.to_model_input(v, "tiny", normalized=False)[2], torch.from_numpy(v)
    )
    v16 = (v * 65535).round().astype(np.uint16)
    torch.testing.assert_close(
        I.to_model_input(v16, "tiny", normalized=False)[0], torch.from_numpy(v), atol=1e-5, rtol=0
    )
    assert I.to_model_input(np.ones((S, S), bool), "tiny", normalized=False).min() == 1


def test_animation_and_multipage_use_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (S, S), c) for c in (RED, GREEN, BLUE)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:], lossless=True)
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    for name in ("anim.gif", "anim.webp", "pages.tif"):
        assert_colour(load01(tmp_path / name), S // 2, S // 2, RED, atol=0.02)


def test_icc_profile_is_applied_without_damage(tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    a = gradient(S, S)
    Image.fromarray(a).save(tmp_path / "icc.png", icc_profile=icc)
    torch.testing.assert_close(
        load01(tmp_path / "icc.png"),
        I.to_model_input(a, "tiny", normalized=False),
        atol=2 / 255,
        rtol=0,
    )
    Image.fromarray(a).save(tmp_path / "badicc.png", icc_profile=b"not a profile" * 10)
    with pytest.warns(UserWarning, match=r"badicc\.png: .*colour profile"):
        x = load01(tmp_path / "badicc.png")
    torch.testing.assert_close(x, I.to_model_input(a, "tiny", normalized=False))


# --- bad files: an error that names the file and the problem ----------------------------------


def _bad(path, match, cls=I.ImageLoadError, **kw):
    with pytest.raises(cls, match=match) as e:
        I.load_image(path, "tiny", **kw)
    assert str(path) in str(e.value) and e.value.path == path
    # no traceback soup: no chained exception is printed under ours
    assert e.value.__cause__ is None
    assert e.value.__context__ is None or e.value.__suppress_context__
    return e.value


def test_bad_files_are_named_with_the_problem(tmp_path):
    good = pil_bytes(Image.fromarray(gradient(60, 60)), "JPEG")
    png = png_bytes(gradient(60, 60))
    cases = {
        "empty.jpg": (b"", "empty"),
        "half.jpg": (good[: len(good) // 2], "truncated"),
        "half.png": (png[: len(png) // 2], "truncated|corrupt"),
        "notes.jpg": (b"shopping list: milk, eggs\n" * 20, "not an image.*text"),
        "page.png": (b"<!DOCTYPE html><html><body>404</body></html>", "not an image.*HTML"),
        "doc.jpg": (b"%PDF-1.4\n" + b"x" * 100, "not an image.*PDF"),
        "random.webp": (
            bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)),
            "not an image",
        ),
        "really_png.jpg": (png, r"is a PNG image but its name ends in \.jpg.*really_png\.png"),
        "photo.heic": (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 50, "HEIC"),
        "header.png": (png[:40], "truncated|corrupt"),
    }
    for name, (data, match) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        _bad(p, match)
    # a wrongly named but valid file loads when the caller accepts it
    assert I.load_image(tmp_path / "really_png.jpg", "tiny", check_extension=False).shape == (
        3,
        S,
        S,
    )


def test_missing_folder_and_special_files(tmp_path):
    _bad(tmp_path / "nope.jpg", "no such file")
    (tmp_path / "dir.jpg").mkdir()
    _bad(tmp_path / "dir.jpg", "is a folder.*load_folder")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "gone.jpg")
    _bad(tmp_path / "link.jpg", "broken link")
    os.mkfifo(tmp_path / "pipe.jpg")  # opening it would block forever
    _bad(tmp_path / "pipe.jpg", "not a regular file")
    with pytest.raises(TypeError, match="file path"):
        I.load_image(12, "tiny")
    with pytest.raises(ValueError, match="unknown profile"):
        I.load_image(tmp_path / "nope.jpg", "nope")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path):
    p = write_png(tmp_path / "locked.png", gradient(9, 9))
    p.chmod(0)
    _bad(p, "permission denied")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(bomb_png(60_000, 60_000))  # 3.6 gigapixels in a few hundred bytes
    assert p.stat().st_size < 2000
    tracemalloc.start()
    e = _bad(p, "too many pixels|megapixels", I.ImageTooLargeError)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6
    assert "decompression bomb" in str(e) or "decompression" in str(e).lower()
    q = tmp_path / "bomb2.png"
    q.write_bytes(bomb_png(9000, 9000))  # under Pillow's limit, over ours
    _bad(q, "81.0 megapixels, over the limit of 1.0", I.ImageTooLargeError, max_pixels=1_000_000)
    with pytest.raises(ValueError, match="max_pixels"):
        I.load_image(q, "tiny", max_pixels=0)


def test_pillow_never_opens_postscript(tmp_path):
    p = tmp_path / "evil.jpg"
    p.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    _bad(p, "not an image.*PostScript")


# --- arrays at the API boundary ----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((3, 40, 40), np.uint8), r"moveaxis"),
        (np.zeros((40, 40, 5), np.uint8), r"not an image"),
        (np.zeros((0, 40, 3), np.uint8), r"no pixels"),
        (np.full((8, 8, 3), 2.0), r"\[0, 1\].*divide by 255|rescale"),
        (np.full((8, 8, 3), -0.5, np.float32), r"\[0, 1\]"),
        (np.full((8, 8, 3), np.nan), r"NaN"),
        (np.zeros((8, 8, 3), np.int64), r"ambiguous"),
        (np.zeros((8, 8, 3), np.complex64), r"not an image"),
        (np.zeros((8,), np.uint8), r"not an image"),
        (torch.zeros(1, 3, 8, 8), r"one image at a time"),
        (torch.zeros(8, 8, 3), r"channels-last"),
    ],
)
def test_bad_arrays(bad, match):
    with pytest.raises(I.ImageArrayError, match=match):
        I.to_model_input(bad, "tiny")


def test_bad_types_and_options():
    with pytest.raises(TypeError, match="expected an image"):
        I.to_model_input([[1, 2], [3, 4]], "tiny")
    with pytest.raises(ValueError, match="background"):
        I.to_model_input(np.zeros((4, 4), np.uint8), "tiny", background=(300, 0, 0))
    with pytest.raises(I.ImageArrayError, match="max_pixels"):
        I.to_model_input(np.zeros((100, 100), np.uint8), "tiny", max_pixels=100)


# --- folders --------------------------------------------------------------------------------------


def _messy_folder(root):
    files = sample_files(root / "photos")
    d = root / "photos"
    (d / "notes.txt").write_text("not a photo")
    (d / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (d / "broken.jpg").write_bytes(files["rgb.jpg"].read_bytes()[:200])
    (d / "empty.png").write_bytes(b"")
    (d / "iphone.heic").write_bytes(b"\x00" * 40)
    (d / "sub").mkdir()
    write_png(d / "sub" / "inner.png", gradient(20, 20))
    return d, sorted(files)


def test_load_folder_keeps_good_images_and_lists_every_skipped_file(tmp_path):
    d, good = _messy_folder(tmp_path)
    b = I.load_folder(d, "tiny")
    assert b.names == good
    assert b.images.shape == (len(good), 3, S, S)
    assert b.paths == [d / n for n in good]
    assert b.original_sizes == [(40, 30)] * len(good)
    skipped = {s.path.name: s.reason for s in b.skipped}
    assert set(skipped) == {
        "notes.txt",
        ".DS_Store",
        "broken.jpg",
        "empty.png",
        "iphone.heic",
        "sub",
    }
    assert "truncated" in skipped["broken.jpg"] and "empty" in skipped["empty.png"]
    assert "recursive=True" in skipped["sub"] and "HEIC" in skipped["iphone.heic"]
    for name in skipped:
        assert name in b.summary()
    # the batch equals loading each file alone
    for i, n in enumerate(good):
        torch.testing.assert_close(b.images[i], I.load_image(d / n, "tiny"))
    rec = I.load_folder(d, "tiny", recursive=True)
    assert "inner.png" in rec.names and "sub" not in {s.path.name for s in rec.skipped}


def test_iter_folder_streams_the_same_images(tmp_path):
    d, good = _messy_folder(tmp_path)
    batches = list(I.iter_folder(d, "tiny", batch_size=4))
    assert [len(b) for b in batches] == [4, 4, 3]
    torch.testing.assert_close(
        torch.cat([b.images for b in batches]), I.load_folder(d, "tiny").images
    )
    assert sum(len(b.skipped) for b in batches) == 6
    with pytest.raises(ValueError, match="batch_size"):
        I.iter_folder(d, "tiny", batch_size=0)


def test_photo_stream_feeds_mining_and_feature_extraction(tmp_path):
    from torch.utils.data import DataLoader

    from zfcore import models
    from zfcore.features import extract_features
    from zfcore.mining import mine_topk

    d, good = _messy_folder(tmp_path)
    stream = I.PhotoStream(d, "tiny", batch_size=4)
    batches = list(stream)
    assert [len(x) for x, _ in batches] == [4, 4, 3]
    assert all(bool((y == -1).all()) for _, y in batches)
    assert [p.name for p in stream.paths] == good and len(stream.skipped) == 6
    torch.testing.assert_close(torch.cat([x for x, _ in batches]), I.load_folder(d, "tiny").images)
    model = models.zfnet(**TINY.model_kwargs()).eval()
    top = mine_topk(model, stream, k=2, progress=False)
    ref = mine_topk(model, I.load_folder(d, "tiny").images, k=2, progress=False)
    assert top.n_images == len(good)
    torch.testing.assert_close(top.layers["layer1"].values, ref.layers["layer1"].values)
    feats = extract_features(model, DataLoader(stream, batch_size=None), ["layer5"], progress=False)
    assert len(feats) == len(good)
    with pytest.raises(I.ImageLoadError, match="no such folder"):
        I.PhotoStream(tmp_path / "nope", "tiny")
    with pytest.raises(TypeError, match="unexpected option"):
        I.PhotoStream(d, "tiny", colour="red")


def test_folder_errors(tmp_path):
    with pytest.raises(I.ImageLoadError, match="no such folder"):
        I.load_folder(tmp_path / "nope", "tiny")
    (tmp_path / "empty").mkdir()
    with pytest.raises(I.ImageLoadError, match="no usable image.*empty"):
        I.load_folder(tmp_path / "empty", "tiny")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"")
    with pytest.raises(I.ImageLoadError, match=r"no usable image.*a\.jpg: is empty"):
        I.load_folder(tmp_path / "bad", "tiny")
    f = write_png(tmp_path / "one.png", gradient(8, 8))
    with pytest.raises(I.ImageLoadError, match="not a folder.*load_image"):
        I.load_folder(f, "tiny")
    many = tmp_path / "many"
    many.mkdir()
    for i in range(3):
        write_png(many / f"{i}.png", gradient(8, 8))
    with pytest.raises(ValueError, match="iter_folder"):
        I.load_folder(many, "tiny", max_images=2)


def test_errors_survive_pickling():
    import pickle

    e = I.ImageTooLargeError("/x/a.png", "is huge", "shrink it")
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is I.ImageTooLargeError and str(e2) == str(e) and e2.path == e.path


# --- sample photos --------------------------------------------------------------------------------


def test_sample_photos_offline():
    import skimage.data as skd

    b = I.sample_photos("tiny")
    assert b.names == ["cat", "astronaut", "coffee", "rocket", "motorcycle"]
    assert b.images.shape == (5, 3, S, S)
    torch.testing.assert_close(b.images[0], I.to_model_input(skd.chelsea(), "tiny"))
    assert b.original_sizes[0] == (451, 300)
    one = I.sample_photos("imagenet", ["coffee"], normalized=False)
    assert one.images.shape == (1, 3, 224, 224) and 0 <= float(one.images.min())
    with pytest.raises(ValueError, match="unknown sample photo"):
        I.sample_photos("tiny", ["dog"])
    from torchvision.models import AlexNet_Weights

    cats = AlexNet_Weights.IMAGENET1K_V1.meta["categories"]
    for name, classes in I.SAMPLE_PHOTO_CLASSES.items():
        assert name in I.SAMPLE_PHOTOS and all(c in cats for c in classes)
