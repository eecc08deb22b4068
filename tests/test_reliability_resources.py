"""Resource limits: mining and feature extraction over a folder of photos keep memory bounded: the
peak does not grow with the number of images.

A small version of benchmarks/memory.py (which measures 2,000 vs 20,000 images): 80 vs 640
generated photos, each measurement in a fresh fork after an unmeasured warm-up on 32 photos. The
in-memory baseline (the whole folder as one tensor) does grow by the images' size, so the
measurement is able to see growth.
"""

import pytest
import torch
from helpers import memory
from torch.utils.data import DataLoader

from zfcore import models
from zfcore.data.images import PhotoStream, load_folder
from zfcore.profiles import get_profile

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not memory.available(), reason="needs Linux /proc and fork"),
]

P = get_profile("tiny")
SMALL, LARGE = 80, 640
IMAGE_MB = 3 * P.image_size**2 * 4 / 2**20


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    folders = {
        n: memory.write_scene_photos(root / f"n{n}", n, P.image_size) for n in (SMALL, LARGE)
    }
    warm = memory.write_scene_photos(root / "warm", 32, P.image_size)
    torch.manual_seed(0)
    return models.zfnet(**P.model_kwargs()).eval(), folders, warm


def _mine(model, folder):
    from zfcore.mining import mine_topk

    stream = PhotoStream(folder, P, batch_size=16, progress=False)
    return mine_topk(model, stream, progress=False).n_images


def _features(model, folder):
    from zfcore.features import extract_features

    stream = PhotoStream(folder, P, batch_size=16, progress=False)
    return len(
        extract_features(model, DataLoader(stream, batch_size=None), ["layer5"], progress=False)
    )


def _in_memory(model, folder):
    from zfcore.mining import mine_topk

    return mine_topk(model, load_folder(folder, P, progress=False).images, progress=False).n_images


def _peaks(work, model, folders, warm, repeats: int = 3):
    """Peak growth per folder size, the lowest of ``repeats`` measurements: the noise of a resident
    set measurement (a page collapsed into a huge page, a heap that cannot shrink) only adds."""
    out = {}
    for n, folder in folders.items():
        runs = [
            memory.peak_growth_mb(lambda: work(model, folder), warmup=lambda: work(model, warm))
            for _ in range(repeats)
        ]
        assert all(count == n for _, _, count in runs)
        out[n] = min(mb for mb, _, _ in runs)
    return out


@pytest.mark.parametrize("work", [_mine, _features], ids=["mine_topk", "extract_features"])
def test_streaming_memory_does_not_grow_with_the_folder(setup, work):
    model, folders, warm = setup
    peaks = _peaks(work, model, folders, warm)
    grown = peaks[LARGE] - peaks[SMALL]
    # 560 more images would add ~27 MB if they were held; allow a fifth of that for noise
    assert grown < 0.2 * (LARGE - SMALL) * IMAGE_MB, peaks


def test_the_measurement_sees_a_folder_held_in_memory(setup):
    model, folders, warm = setup
    peaks = _peaks(_in_memory, model, folders, warm)
    assert peaks[LARGE] - peaks[SMALL] > 0.7 * (LARGE - SMALL) * IMAGE_MB, peaks
