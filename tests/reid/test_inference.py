"""Embedder: torch path and the optional ONNX Runtime backend."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from reid.inference import Embedder
from reid.model import ModelConfig, ReIdModel


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(80, 60), (64, 64), (50, 90)]
    return [Image.fromarray(rng.integers(0, 255, (*sizes[i % 3], 3), dtype=np.uint8))
            for i in range(n)]


@pytest.fixture(scope="module")
def small_model() -> ReIdModel:
    import torch

    torch.manual_seed(0)
    # Random weights keep the test offline and fast; the neck is in eval mode (running stats).
    return ReIdModel(ModelConfig(backbone="tf_efficientnet_lite0", neck=True, image_size=64),
                     pretrained=False).eval()


def test_torch_embedder_is_unit_norm_and_batch_independent(small_model):
    images = _images(5)
    whole = Embedder(small_model, image_size=64, device="cpu", batch_size=8).embed_images(images)
    split = Embedder(small_model, image_size=64, device="cpu", batch_size=2).embed_images(images)
    assert whole.shape == (5, small_model.embedding_dim)
    assert whole.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(whole, split, atol=1e-4)


def test_unknown_backend_is_rejected(small_model):
    with pytest.raises(ValueError, match="backend"):
        Embedder(small_model, image_size=64, device="cpu", backend="tensorrt")


def test_onnx_backend_is_cpu_only(small_model):
    with pytest.raises(ValueError, match="CPU"):
        Embedder(small_model, image_size=64, device="cuda", backend="onnx")


def test_onnx_backend_matches_torch(small_model):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    images = _images(5, seed=1)
    reference = Embedder(small_model, image_size=64, device="cpu").embed_images(images)
    # batch_size 2 with 5 images also exercises a last batch of 1 (dynamic batch axis).
    onnx = Embedder(small_model, image_size=64, backend="onnx", batch_size=2)
    assert onnx.device.type == "cpu"
    vectors = onnx.embed_images(images)
    assert vectors.shape == reference.shape
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(vectors * reference, axis=1))) > 0.9999
