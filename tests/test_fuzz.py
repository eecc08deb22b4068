"""Fuzzing: thousands of malformed images and arrays at the loader and the public API.

Every case comes from a seeded generator (tests/helpers/fuzz.py), so a failure names the seed and
index that rebuild it. The only acceptable outcomes are a well-formed result or one of the
documented errors with a message; anything else (another exception, a bad tensor, an error that
does not name the file) is counted as a crash and must not happen.

Counts (seed 0): 1,200 damaged image files through load_image, 200 more as one folder through
load_folder, 1,000 odd arrays/tensors through to_model_input, 300 hypothesis-generated valid
images, and a few hundred calls of the model, cache and profile API with wrong arguments.
"""

import sys

import numpy as np
import pytest
import torch
from helpers import fuzz
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from zfcore import cache, models
from zfcore.data import images as I
from zfcore.profiles import ProfileError, get_profile

SEED = 0
S = get_profile("tiny").image_size
MAX_PIXELS = 2_000_000  # keeps lying headers cheap; larger ones are refused as bombs


def _report(name, tally):
    print(f"\nRESULT fuzz {name} {tally.line()}", file=sys.stderr)
    assert not tally.crashes, "\n\n".join(tally.crashes[:5])


def _well_formed(x, normalized=True):
    if x.shape != (3, S, S) or x.dtype != torch.float32 or not bool(torch.isfinite(x).all()):
        return False
    return normalized or (float(x.min()) >= 0 and float(x.max()) <= 1)


@pytest.mark.slow
def test_fuzz_image_files(tmp_path):
    tally = fuzz.Tally()
    for i in range(1200):
        mutation, data, ext = fuzz.image_case(SEED, i)
        path = tmp_path / f"case{i}{ext}"
        path.write_bytes(data)

        def call():
            try:
                return I.load_image(path, "tiny", max_pixels=MAX_PIXELS)
            except I.ImageLoadError as e:
                if str(path) not in str(e) or e.path != path:
                    raise AssertionError(f"error does not name the file: {e}") from None
                raise

        tally.run(
            f"{mutation} case {i} (fuzz.image_case({SEED}, {i}))",
            call,
            (I.ImageLoadError,),
            _well_formed,
        )
    _report("image_files", tally)
    assert tally.total == 1200
    assert tally.ok > 0 and tally.documented["ImageLoadError"] > 0
    assert tally.documented["ImageTooLargeError"] > 0  # lying headers were caught
    assert set(tally.by_case) == set(fuzz.MUTATIONS)


def test_fuzz_folder_skips_and_lists_every_bad_file(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(200):
        _, data, ext = fuzz.image_case(SEED + 1, i)
        (folder / f"case{i:03d}{ext or '.bin'}").write_bytes(data)
    b = I.load_folder(folder, "tiny", max_pixels=MAX_PIXELS, progress=False)
    assert len(b) + len(b.skipped) == 200  # nothing vanished silently
    assert b.images.shape == (len(b), 3, S, S) and bool(torch.isfinite(b.images).all())
    assert all(s.reason for s in b.skipped)
    assert not set(b.names) & {s.path.name for s in b.skipped}
    print(
        f"\nRESULT fuzz folder files=200 loaded={len(b)} skipped={len(b.skipped)}", file=sys.stderr
    )


@pytest.mark.slow
def test_fuzz_arrays(tmp_path):
    tally = fuzz.Tally()
    for i in range(1000):
        desc, a = fuzz.array_case(SEED, i)
        normalized = bool(i % 2)
        tally.run(
            f"{desc} (fuzz.array_case({SEED}, {i}))",
            lambda: I.to_model_input(a, "tiny", normalized=normalized),
            (I.ImageArrayError, TypeError),
            lambda x: _well_formed(x, normalized),
        )
    _report("arrays", tally)
    assert tally.total == 1000 and tally.ok > 50 and tally.documented["ImageArrayError"] > 50


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    a=hnp.arrays(
        np.uint8, st.tuples(st.integers(1, 80), st.integers(1, 80), st.sampled_from([1, 2, 3, 4]))
    ),
    colour=st.tuples(*[st.integers(0, 255)] * 3),
)
def test_any_valid_image_array_gives_a_well_formed_input(a, colour):
    x = I.to_model_input(a, "tiny", normalized=False)
    assert _well_formed(x, normalized=False)
    # a flat colour stays exactly that colour, whatever the size and aspect ratio
    flat = np.broadcast_to(np.array(colour, np.uint8), a.shape[:2] + (3,))
    y = I.to_model_input(flat, "tiny", normalized=False)
    torch.testing.assert_close(
        y,
        (torch.tensor(colour, dtype=torch.float32) / 255).view(3, 1, 1).expand(3, S, S),
        atol=1e-6,
        rtol=0,
    )


# --- the public API with wrong arguments
# -----------------------------------------------------------


def _junk(rng, i):
    """Wrong-argument values of every kind."""
    choices = [
        None,
        -1,
        0,
        10**9,
        2.5,
        float("nan"),
        "",
        "layer99",
        "LAYER1",
        "layer1 ",
        " tiny",
        "mini\x00",
        "ü",
        [1],
        (2,),
        {"a": 1},
        b"tiny",
        torch.tensor(1),
        object(),
        1j,
        "layer" + str(int(rng.integers(-5, 20))),
        "".join(chr(int(c)) for c in rng.integers(32, 0x2FF, 6)),
    ]
    return choices[i % len(choices)]


def _names_layers(call):
    """A wrong layer argument must get a message that lists the model's layers."""
    try:
        return call()
    except (models.LayerError, TypeError) as e:
        if "layer1" not in str(e):
            raise AssertionError(f"unhelpful message: {type(e).__name__}: {e}") from None
        raise


def test_fuzz_public_api(tmp_path):
    rng = np.random.default_rng(SEED)
    model = models.zfnet(**get_profile("tiny").model_kwargs())
    good = model.state_dict()
    tally = fuzz.Tally()
    for i in range(120):
        v = _junk(rng, i)
        tally.run(
            f"get_profile({v!r})",
            lambda: get_profile(v),
            (ProfileError,),
            lambda p: p.name in ("tiny", "mini", "imagenette", "imagenet"),
        )
        tally.run(
            f"get_layer({v!r})",
            lambda: _names_layers(lambda: models.get_layer(model, v)),
            (models.LayerError, TypeError),
        )
    for i in range(150):  # damaged state dicts
        state = dict(good)
        keys = list(state)
        k = keys[int(rng.integers(0, len(keys)))]
        what = i % 5
        if what == 0:
            state.pop(k)
        elif what == 1:
            state[k] = torch.zeros(
                tuple(int(s) for s in rng.integers(1, 5, int(rng.integers(0, 4))))
            )
        elif what == 2:
            state[f"extra.{i}"] = torch.zeros(2)
        elif what == 3:
            state[k] = _junk(rng, i)
        else:
            state = _junk(rng, i)
        tally.run(
            f"load_model_state #{i} ({what})",
            lambda: models.load_model_state(
                models.zfnet(**get_profile("tiny").model_kwargs()), state, "ckpt"
            ),
            (ValueError, TypeError),
        )
    valid = tmp_path / "ok.pt"
    torch.save({"w": torch.arange(100.0)}, valid)
    data = valid.read_bytes()
    for i in range(200):  # damaged tensor files, no checksum
        d = bytearray(data)
        for _ in range(int(rng.integers(1, 8))):
            d[int(rng.integers(0, len(d)))] = int(rng.integers(0, 256))
        if i % 3 == 0:
            d = d[: int(rng.integers(0, len(d)))]
        p = tmp_path / f"t{i}.pt"
        p.write_bytes(bytes(d))
        tally.run(f"load_tensors #{i}", lambda: cache.load_tensors(p), (cache.CacheError,))
    _report("public_api", tally)
    assert tally.total == 2 * 120 + 150 + 200
