"""Model head: GeM, neck, projection, normalisation, stage split."""

from __future__ import annotations

import pytest
import torch

from reid.backbones import backbone_stages
from reid.model import GeM, ModelConfig, ReIdModel

BACKBONES = ["tf_efficientnet_lite0", "resnet18"]


def test_gem_matches_brute_force_generalised_mean() -> None:
    torch.manual_seed(0)
    pool = GeM(p=3.0)
    with torch.no_grad():
        pool.p.fill_(2.5)
    features = torch.rand(2, 4, 3, 5) * 2
    expected = torch.empty(2, 4)
    for b in range(2):
        for c in range(4):
            values = [max(float(v), 1e-6) ** 2.5 for v in features[b, c].flatten()]
            expected[b, c] = (sum(values) / len(values)) ** (1 / 2.5)
    torch.testing.assert_close(pool(features), expected, rtol=1e-5, atol=1e-6)


def test_gem_exponent_is_learnable_and_starts_at_three() -> None:
    pool = GeM()
    assert pool.p.requires_grad and float(pool.p.detach()) == 3.0
    pool(torch.rand(1, 2, 3, 3)).sum().backward()
    assert pool.p.grad is not None


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("embedding_dim", [None, 16])
def test_embeddings_have_unit_norm_and_expected_shape(
    backbone: str, embedding_dim: int | None
) -> None:
    torch.manual_seed(0)
    model = ReIdModel(ModelConfig(backbone=backbone, embedding_dim=embedding_dim), pretrained=False)
    model.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(images)
        embeddings = model.forward_head(features)
        direct = model(images)
    assert features.ndim == 4 and features.shape[1] == model.feature_dim
    assert embeddings.shape == (2, embedding_dim or model.feature_dim) == (2, model.embedding_dim)
    assert not torch.isnan(embeddings).any()
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(direct, embeddings)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_backbone_stages_compose_to_forward_features(backbone: str) -> None:
    torch.manual_seed(0)
    model = ReIdModel(ModelConfig(backbone=backbone), pretrained=False).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        staged = images
        for stage in backbone_stages(model.backbone):
            staged = stage(staged)
        torch.testing.assert_close(staged, model.forward_features(images))
