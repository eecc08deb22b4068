"""The imagenet profile's transfer engine (zfcore.transfer) on miniature on-disk trees of
Caltech-101, Caltech-256 and PASCAL VOC 2012 in each data set's real layout: the pools, section
5's protocols per data set, and the pretrained network's missing weights named offline."""

import pytest
import torch

from tests.helpers.transfer_pool import imagenet_profile, real_layout_tree
from zfcore import transfer
from zfcore.pretrained import MissingWeightsError


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return real_layout_tree(tmp_path_factory.mktemp("zfcore-data"))


def test_real_transfer_data_pools_every_image_of_caltech(tree):
    P = imagenet_profile(tree)
    d = transfer.real_transfer_data(P, "caltech101")
    assert d.name == "Caltech-101" and d.classes == ["accordion", "airplanes", "anchor"]
    assert len(d.dataset) == 3 * 9  # train + val + test of the registry, background excluded
    x, y = d.dataset[0]
    assert x.shape == (3, 64, 64)
    labels = torch.tensor([int(d.dataset[i][1]) for i in range(len(d.dataset))])
    assert torch.bincount(labels).tolist() == [9, 9, 9]
    assert d.key == transfer.real_transfer_data(P, "caltech101").key  # a stable cache key
    d256 = transfer.real_transfer_data(P, "caltech256")
    assert d256.classes == ["ak47", "american-flag", "backpack"] and len(d256.dataset) == 27


def test_studies_follow_section_5_protocols(tree, tmp_path):
    P = imagenet_profile(tree)
    studies = transfer.transfer_studies(P)
    assert [d.name for d, _ in studies] == ["Caltech-101", "Caltech-256"]
    assert (
        studies[0][1].ns == (15, 30)
        and studies[0][1].draws == 5
        and studies[0][1].test_per_class == 50
    )
    assert studies[1][1].ns == (15, 30, 45, 60) and studies[1][1].test_per_class == 25
    empty = imagenet_profile(tmp_path)
    with pytest.raises(transfer.TransferError, match="caltech101 not found"):
        transfer.transfer_studies(empty)
    assert transfer.multilabel_study(empty) is None


def test_pretrained_alexnet_missing_offline_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub: the weights are not on disk
    with pytest.raises(MissingWeightsError, match="alexnet"):
        transfer.pretrained_model("imagenet")
