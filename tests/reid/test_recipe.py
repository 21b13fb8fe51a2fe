"""Training recipe pieces: imprinting, frozen BatchNorm, species-balanced sampling,
augmentation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from reid.data import CornerOcclusion, eval_transform, train_transform
from reid.losses import SubCenterArcFace
from reid.model import ModelConfig, ReIdModel
from reid.train import TrainConfig, freeze_batchnorm_statistics, imprint_head


def _tiny_model() -> ReIdModel:
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    backbone.num_features = 8
    backbone.forward_features = backbone.forward
    return ReIdModel(ModelConfig(neck=True), pretrained=False, backbone=backbone)


def test_imprinting_puts_new_sub_centers_on_class_means_and_keeps_copied_ones() -> None:
    torch.manual_seed(0)
    model = _tiny_model()
    head = SubCenterArcFace(8, num_classes=3, k=2)
    kept = head.weight[2:4].detach().clone()  # class 1 came from an earlier model
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    # Three clusters, far from the fresh neck's mean 0 and variance 1.
    pooled = (
        5 + torch.arange(8.0) + 3 * F.one_hot(torch.tensor(labels) * 2, 8) + 0.3 * torch.rand(12, 8)
    )

    imprint_head(model, head, pooled, labels, classes=[0, 2], calibrate_neck=True)

    torch.testing.assert_close(model.neck.running_mean, pooled.mean(dim=0))
    torch.testing.assert_close(model.neck.running_var, pooled.var(dim=0, unbiased=False))
    model.eval()
    embeddings = F.normalize(model.neck(pooled), dim=1)
    for c in (0, 2):
        mean = F.normalize(embeddings[4 * c : 4 * c + 4].mean(dim=0), dim=0)
        centers = F.normalize(head.weight[2 * c : 2 * c + 2].detach(), dim=1)
        assert (centers @ mean).min() > 0.99  # near the mean, with a little noise
        assert not torch.allclose(centers[0], centers[1])  # sub-centers can still split
    torch.testing.assert_close(head.weight[2:4].detach(), kept)
    # Every training embedding is now closest to its own class.
    predicted = head.cosine(embeddings).argmax(dim=1)
    assert predicted[[0, 1, 2, 3, 8, 9, 10, 11]].tolist() == [0] * 4 + [2] * 4


def test_frozen_batchnorm_statistics_do_not_move_while_weights_train() -> None:
    torch.manual_seed(0)
    model = _tiny_model()
    batchnorm = model.backbone[1]
    before = batchnorm.running_mean.clone()
    weight_before = batchnorm.weight.detach().clone()
    model.train()
    freeze_batchnorm_statistics(model.backbone)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.rand(4, 3, 8, 8) * 10).sum()
    loss.backward()
    optimizer.step()
    torch.testing.assert_close(batchnorm.running_mean, before)
    assert not torch.equal(batchnorm.weight.detach(), weight_before)
    assert model.neck.training  # only the backbone's statistics are frozen


def test_species_balanced_sampling_gives_each_species_an_equal_share() -> None:
    from reid.data import ClassBalancedSampler

    # Species "big": 6 classes of 1-3 images; species "small": 2 classes of 2 and 8 images.
    labels = [0, 1, 1, 2, 2, 2, 3, 4, 4, 5] + [6, 6] + [7] * 8
    species = ["big"] * 10 + ["small"] * 10
    by_class = ClassBalancedSampler(labels, num_samples=40_000, seed=3)
    by_species = ClassBalancedSampler(labels, num_samples=40_000, seed=3, groups=species)

    def shares(sampler: ClassBalancedSampler) -> tuple[float, np.ndarray]:
        draws = np.fromiter(iter(sampler), dtype=np.int64)
        small = np.mean([species[i] == "small" for i in draws])
        per_class = np.bincount(np.asarray(labels)[draws], minlength=8) / len(draws)
        return float(small), per_class

    small, per_class = shares(by_class)
    assert abs(small - 2 / 8) < 0.02  # two of eight classes
    np.testing.assert_allclose(per_class, 1 / 8, atol=0.01)
    small, per_class = shares(by_species)
    assert abs(small - 0.5) < 0.02
    np.testing.assert_allclose(per_class[:6], 0.5 / 6, atol=0.01)
    np.testing.assert_allclose(per_class[6:], 0.25, atol=0.015)


def test_miewid_augmentation_changes_the_image_and_can_occlude_a_corner() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    plain = eval_transform(64)(image)
    # torchvision's RandomChoice draws from Python's `random`, the rest from torch: seed both,
    # so the views do not depend on which tests ran before.
    random.seed(0)
    torch.manual_seed(0)
    views = [train_transform(64, style="miewid")(image) for _ in range(8)]
    assert all(v.shape == plain.shape == (3, 64, 64) for v in views)
    # Every step is random, so a view equals the plain one with probability
    # 0.2 * 0.2 * 0.5 * 0.7 = 1.4%; most must differ.
    assert sum(not torch.allclose(v, plain) for v in views) >= 7

    torch.manual_seed(0)
    occluded = CornerOcclusion(p=1.0)(torch.ones(3, 50, 50))
    blank = occluded[0] == 0
    assert 0.2**2 <= blank.float().mean() <= 0.4**2 + 0.01
    corners = [blank[0, 0], blank[0, -1], blank[-1, 0], blank[-1, -1]]
    assert sum(bool(c) for c in corners) == 1  # one corner, and the rest untouched
    assert torch.equal(CornerOcclusion(p=0.0)(torch.ones(3, 8, 8)), torch.ones(3, 8, 8))


def test_unknown_augmentation_is_refused(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="augmentation"):
        TrainConfig(data_dirs=[], out_dir=str(tmp_path), augmentation="mixup")
