"""The procedural scenes are frozen: every (seed, group, split, index) renders bit-for-bit the
image, label, box and keypoints it rendered when these digests were recorded.

Models are trained on these scenes and cached under ``GENERATOR_VERSION``; a renderer change that
moves a single bit of a single pixel would silently invalidate them. So speed work on
``zfcore.data.scenes`` must keep its output identical, and this test pins it: SHA-256 digests of
about a thousand scenes at the tiny (64 px) and mini (112 px) sizes, the benchmark size (96 px)
and an odd size (37 px, where vectorised loops end in a scalar tail), recorded with the renderer
of generator version 2 before it was vectorised further. Each case is rendered in shuffled,
uneven batches, so the digests also pin that an image does not depend on its batch.

A deliberate change of the scenes bumps ``GENERATOR_VERSION`` and re-records the digests:
``python -m tests.test_data_scenes_frozen`` prints them.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from zfcore.data.scenes import (
    GENERATOR_VERSION,
    KEYPOINT_NAMES,
    MAIN_CLASSES,
    TRANSFER_CLASSES,
    render_scenes,
)

torch.set_num_threads(1)

#: name: (size, group, split, seed, indices)
CASES = {
    "tiny_main_train": (64, "main", "train", 0, np.arange(300)),
    "mini_main_train": (
        112,
        "main",
        "train",
        0,
        np.r_[np.arange(200), [1234, 5678, 9999, 12345, 19999]],
    ),
    "mini_main_test": (112, "main", "test", 0, np.arange(100)),
    "mini_transfer_val": (112, "transfer", "val", 0, np.arange(100)),
    "tiny_transfer_train": (64, "transfer", "train", 0, np.arange(100)),
    "bench_main_val_seed3": (96, "main", "val", 3, np.arange(100)),
    "odd_main_train": (37, "main", "train", 0, np.arange(64)),
}

#: Recorded with generator version 2.
DIGESTS = {
    "tiny_main_train": "e8bbd1624e7d5c91facce06a77b0a2508d7a1836c28db9d9e2014191d15143ef",
    "mini_main_train": "9cd989d2778fdc0cd16ad1cb7a43148640cd587b2ce8d6d01f32fdf303b34821",
    "mini_main_test": "a441b1fe8f3e1a0c0c76e22dfba90eb935abf45ab6f56eb612c91f369eff96c2",
    "mini_transfer_val": "569f69168ed56389bb99f484daaaded0b73f6dc22ea2010425adac9d7a49a8ff",
    "tiny_transfer_train": "b49d5986ff7105e17b2ca9edf5a845acd8e5a701136748c1391f0aad5c2f892b",
    "bench_main_val_seed3": "91296fe929429f67c46df143bfcc58057af8fd30e526da53aa3a0c49a1e43538",
    "odd_main_train": "987e181814fc637239a8d9f311f406f040327c502a5deda930857005c02099f0",
}
FROZEN_VERSION = 2


def scenes_digest(size, group, split, seed, indices, batch_seed=0) -> str:
    """SHA-256 over every scene of ``indices`` (in index order): image, label, box and keypoints,
    rendered in shuffled batches of uneven sizes."""
    classes = MAIN_CLASSES if group == "main" else TRANSFER_CLASSES
    rng = np.random.default_rng(batch_seed)
    order = rng.permutation(len(indices))
    per_index = {}
    start = 0
    while start < len(order):
        stop = start + int(rng.integers(1, 90))
        chunk = indices[order[start:stop]]
        b = render_scenes(chunk, size=size, classes=classes, group=group, split=split, seed=seed)
        for j, i in enumerate(chunk.tolist()):
            parts = [
                b.images[j].numpy().tobytes(),
                b.labels[j].numpy().tobytes(),
                b.boxes[j].numpy().tobytes(),
            ]
            parts += [b.keypoints[k][j].numpy().tobytes() for k in KEYPOINT_NAMES]
            per_index[i] = b"".join(parts)
        start = stop
    h = hashlib.sha256()
    for i in indices.tolist():
        h.update(per_index[i])
    return h.hexdigest()


def test_digests_are_for_this_generator_version():
    assert GENERATOR_VERSION == FROZEN_VERSION, (
        "GENERATOR_VERSION changed: re-record DIGESTS (python -m tests.test_data_scenes_frozen) "
        "and FROZEN_VERSION together, and say in the commit why the scenes changed"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_scenes_are_bit_identical_to_the_recorded_renderer(name):
    assert scenes_digest(*CASES[name]) == DIGESTS[name], (
        f"scenes of case {name!r} changed: rendering must stay bit-for-bit identical for a "
        f"given GENERATOR_VERSION (trained models and caches depend on it)"
    )


def test_digest_does_not_depend_on_the_batching():
    size, group, split, seed, idx = CASES["odd_main_train"]
    assert scenes_digest(size, group, split, seed, idx, batch_seed=1) == DIGESTS["odd_main_train"]


def test_digest_sees_a_one_ulp_change(monkeypatch):
    """The check can fail: nudging one pixel of one image by one float32 step changes it."""
    size, group, split, seed, idx = CASES["odd_main_train"]
    real = render_scenes

    def nudged(*args, **kw):
        b = real(*args, **kw)
        if 5 in b.indices.tolist():
            j = b.indices.tolist().index(5)
            b.images[j, 1, 3, 4] = torch.nextafter(b.images[j, 1, 3, 4], torch.tensor(2.0))
        return b

    monkeypatch.setitem(globals(), "render_scenes", nudged)
    assert scenes_digest(size, group, split, seed, idx) != DIGESTS["odd_main_train"]


if __name__ == "__main__":
    for case, args in CASES.items():
        print(f'    "{case}": "{scenes_digest(*args)}",')


def test_an_empty_batch_renders_to_an_empty_tensor():
    from zfcore.data.scenes import render_scenes

    assert render_scenes([], size=64).images.shape == (0, 3, 64, 64)
