"""The data figure (zfcore.plotting.data) and the data benchmark's smoke run."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from zfcore.data import MAIN_CLASSES, get_dataset  # noqa: E402
from zfcore.plotting.data import sample_grid  # noqa: E402

torch.set_num_threads(1)


def test_sample_grid_draws_every_image_box_and_face_keypoint():
    batch = get_dataset("tiny", "val").scenes(range(12))
    fig = sample_grid(batch, ncols=6)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 12
    assert [ax.get_title() for ax in axes] == [MAIN_CLASSES[int(y)] for y in batch.labels]
    assert all(len(ax.patches) == 1 for ax in axes)  # one box each
    faces = [i for i, y in enumerate(batch.labels) if MAIN_CLASSES[int(y)] == "face"]
    assert faces
    for i in range(12):
        markers = axes[i].lines
        assert len(markers) == (3 if i in faces else 0)
    # the keypoint markers sit at the keypoints (pixel centres at integer + 0.5)
    x, y = axes[faces[0]].lines[0].get_data()
    want = batch.keypoints["left_eye"][faces[0]].numpy() - 0.5
    np.testing.assert_allclose([x[0], y[0]], want, atol=1e-5)
    matplotlib.pyplot.close(fig)


def test_sample_grid_rejects_what_is_not_a_scene_batch():
    with pytest.raises(TypeError, match="SceneBatch"):
        sample_grid(torch.zeros(2, 3, 8, 8))


def test_benchmark_smoke_run_prints_result_line(capsys):
    from benchmarks import data as bench

    out = bench.main(["--quick", "--size", "32", "--threads", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("RESULT data images_per_s=") and "ratio_vs_png=" in lines[-1]
    assert out["images_per_s"] > 0 and out["ratio_vs_png"] > 0
