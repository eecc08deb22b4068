"""Table 7 (zfcore.paper.table7_features): a linear SVM and a softmax on each layer's features
of a small synthetic pool, on the draws of the transfer study, the layer-7 softmax equal to
Tables 4-5's pretrained arm; the result's rows, numbers, readings and verdict."""

import pytest
import torch
from torch.utils.data import TensorDataset

from tests.helpers.transfer_pool import (
    imagenet_profile,
    real_layout_tree,
    small_zfnet,
    square_pool,
    untrained_alexnet,
)
from zfcore.paper.table7_features import (
    METHODS,
    FeatureStudyError,
    LayerProbeResult,
    check_methods,
    probe_layers,
)
from zfcore.paper.tables4_6_transfer import run_transfer
from zfcore.transfer import TransferConfig, TransferData, TransferError, transfer_studies


@pytest.mark.slow
def test_probe_layers_on_a_synthetic_pool(tmp_path):
    model = small_zfnet()
    x, y = square_pool(per_class=10)
    data = TransferData("synthetic", TensorDataset(x, y), ["a", "b", "c", "d"], {"synthetic": 1})
    # the splits depend on ns, draws, test_per_class and seed only: no network arm is needed
    cfg = TransferConfig(ns=(2, 5), draws=2, test_per_class=4, max_iter=50, scratch=False)
    r = run_transfer(model, data, cfg, cache_dir=tmp_path, progress=False)

    lp = probe_layers(model, data, cfg, cache_dir=tmp_path, progress=False)
    assert lp.layers == [f"layer{i}" for i in range(1, 8)] and lp.n == 5
    assert lp.accuracy["svm"].shape == lp.accuracy["softmax"].shape == (2, 7)
    # the layer-7 softmax of Table 7 is exactly Table 4's pretrained softmax at the same n
    torch.testing.assert_close(lp.accuracy["softmax"][:, -1], r.pretrained[:, -1])
    assert torch.equal(lp.correct["softmax"][:, -1], r.correct["pretrained"][:, -1])
    assert torch.equal(lp.test_labels, r.test_labels)
    v = lp.verdict("svm")
    deep = lp.accuracy["svm"][:, 4:].double().mean()
    shallow = lp.accuracy["svm"][:, :3].double().mean()
    assert v.claim == "deeper_layers_better_svm" and v.effect == pytest.approx(
        100 * float(deep - shallow)
    )
    with pytest.raises(FeatureStudyError, match="were not probed"):
        lp.verdict("svm", deep=("layer9",))
    with pytest.raises(FeatureStudyError, match="is not one of config.ns"):
        probe_layers(model, data, cfg, n=3, cache_dir=tmp_path, progress=False)
    assert lp.classes == ["a", "b", "c", "d"] and lp.dims[-1] == r.feature_dim
    again = probe_layers(model, data, cfg, cache_dir=tmp_path, progress=False)
    assert torch.equal(again.accuracy["svm"], lp.accuracy["svm"])
    with pytest.raises(FeatureStudyError, match="non-empty subset"):
        probe_layers(model, data, cfg, methods=("knn",), cache_dir=tmp_path, progress=False)


def test_layer_probe_result_rows_numbers_and_readings():
    lp = LayerProbeResult(
        "toy",
        ["layer1", "layer2", "layer3"],
        10,
        {
            "svm": torch.tensor([[0.4, 0.6, 0.5], [0.6, 0.8, 0.7]]),
            "softmax": torch.tensor([[0.5, 0.45, 0.7], [0.5, 0.45, 0.7]]),
        },
        [8, 4, 2],
        20,
        ["a", "b"],
    )
    assert lp.best_layer("svm") == "layer2" and lp.best_layer("softmax") == "layer3"
    assert lp.drops("svm") == [("layer2", "layer3", pytest.approx(0.1))]
    rows = lp.rows()
    assert [r["layer"] for r in rows] == lp.layers and rows[1]["dims"] == 4
    assert rows[1]["svm_accuracy_pct"] == pytest.approx(70.0)
    # 0.4 and 0.6: sample standard deviation sqrt(2 * 0.1^2 / 1)
    assert rows[0]["svm_std_pct"] == pytest.approx(100 * 0.02**0.5)
    nums = lp.numbers("x_")
    assert nums["x_svm_accuracy_pct_layer2"] == pytest.approx(70.0)
    assert nums["x_softmax_accuracy_std_pct_layer1"] == 0.0
    assert len(nums) == 2 * 2 * 3
    assert lp.depth_numbers("svm", "x_") == {
        "x_svm_monotone_with_depth": False,
        "x_svm_best_layer": "layer2",
    }
    v = type("V", (), {"verdict": "held"})()
    text = lp.conclusion("svm", v)
    assert text.startswith("toy, svm: layer 1 50.0 % -> layer 7 60.0 %, best layer2 (70.0 %)")
    assert "not monotone with depth (falls: layer2 -> layer3 (-10.0))" in text
    assert text.endswith("discriminative features: held here.")
    assert (
        lp.verdict_detail("softmax") == "(layers 5-7: 55.0 % vs layers 1-3: 55.0 %, chance 50.0 %)"
    )


def test_check_methods():
    assert check_methods(("softmax",)) == ["softmax"] and check_methods(list(METHODS)) == [
        "svm",
        "softmax",
    ]
    for bad in ([], "svm", ["svm", "knn"]):
        with pytest.raises(FeatureStudyError, match="non-empty subset"):
            check_methods(bad)
    assert issubclass(FeatureStudyError, TransferError) and issubclass(
        FeatureStudyError, ValueError
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return real_layout_tree(tmp_path_factory.mktemp("zfcore-data"))


@pytest.mark.slow
def test_table_7_on_miniature_caltech(tree, tmp_path):
    """Table 7 on the imagenet profile's path (an untrained AlexNet on a miniature Caltech-101
    in its real layout): the plumbing, not the accuracy."""
    data, cfg = transfer_studies(
        imagenet_profile(tree), ns=(2, 4), draws=2, test_per_class=3, max_iter=20
    )[0]
    lp = probe_layers(untrained_alexnet(), data, cfg, n=4, cache_dir=tmp_path, progress=False)
    assert lp.dims[-1] == 4096 and lp.accuracy["svm"].shape == (2, 7)
    assert lp.dims[0] == 64 * 6 * 6  # AlexNet's layer 1 (64 maps of 15x15) pooled to 6x6
