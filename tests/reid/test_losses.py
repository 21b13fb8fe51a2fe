"""Sub-center ArcFace and dynamic margins against direct computations."""

from __future__ import annotations

import math

import numpy as np
import torch

from reid.losses import SubCenterArcFace, dynamic_margins


def test_subcenter_arcface_logits_match_direct_computation() -> None:
    torch.manual_seed(0)
    num_classes, k, dim = 4, 3, 8
    margins = [0.2, 0.3, 0.4, 0.5]
    head = SubCenterArcFace(dim, num_classes, k=k, scale=16.0, margins=margins)
    embeddings = torch.randn(5, dim)
    labels = torch.tensor([0, 1, 2, 3, 1])
    logits = head.logits(embeddings, labels)

    weight = head.weight.detach().double().numpy()
    expected = np.zeros((5, num_classes))
    for i in range(5):
        e = embeddings[i].double().numpy()
        e = e / np.linalg.norm(e)
        for c in range(num_classes):
            cosines = [float(e @ (w / np.linalg.norm(w))) for w in weight[c * k : (c + 1) * k]]
            cosine = max(cosines)
            if c == int(labels[i]):
                m = margins[c]
                theta = math.acos(cosine)
                if cosine > math.cos(math.pi - m):
                    cosine = math.cos(theta + m)
                else:
                    cosine = cosine - math.sin(math.pi - m) * m
            expected[i, c] = 16.0 * cosine
    np.testing.assert_allclose(logits.detach().numpy(), expected, atol=1e-4)
    loss = head(embeddings, labels)
    expected_loss = torch.nn.functional.cross_entropy(torch.tensor(expected), labels)
    assert abs(float(loss.detach()) - float(expected_loss)) < 1e-4


def test_subcenter_arcface_owns_trainable_weight() -> None:
    head = SubCenterArcFace(8, 5, k=3)
    assert head.weight.shape == (15, 8)
    assert [name for name, _ in head.named_parameters()] == ["weight"]
    assert "margins" in head.state_dict()


def test_dynamic_margins_follow_quartic_root_formula() -> None:
    counts = np.array([2, 5, 10, 100])
    margins = dynamic_margins(counts, margin_min=0.2, margin_max=0.5)
    t = counts**-0.25
    expected = 0.2 + (t - t.min()) / (t.max() - t.min()) * 0.3
    np.testing.assert_allclose(margins, expected, rtol=1e-6)
    assert margins[0] == np.float32(0.5) and margins[-1] == np.float32(0.2)
    assert np.all(np.diff(margins) < 0)
    np.testing.assert_allclose(dynamic_margins([3, 3]), [0.5, 0.5])
