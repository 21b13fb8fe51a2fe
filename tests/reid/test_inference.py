"""Embedder: the torch path and the ONNX Runtime path (the CPU default)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from reid.checkpoint import save_model_file
from reid.inference import Embedder, default_onnx_file, load_model
from reid.model import ModelConfig, ReIdModel


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(80, 60), (64, 64), (50, 90)]
    return [
        Image.fromarray(rng.integers(0, 255, (*sizes[i % 3], 3), dtype=np.uint8)) for i in range(n)
    ]


@pytest.fixture(scope="module")
def small_model() -> ReIdModel:
    import torch

    torch.manual_seed(0)
    # Random weights keep the test offline and fast; the neck is in eval mode (running stats).
    return ReIdModel(
        ModelConfig(backbone="tf_efficientnet_lite0", neck=True, image_size=64), pretrained=False
    ).eval()


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


def test_auto_backend_is_onnx_on_cpu(small_model, tmp_path):
    embedder = Embedder(small_model, image_size=64, device="cpu", onnx_file=tmp_path / "m.onnx")
    assert embedder.backend == "onnx"
    assert (tmp_path / "m.onnx").is_file()


def test_onnx_backend_matches_torch(small_model):
    images = _images(5, seed=1)
    reference = Embedder(small_model, image_size=64, device="cpu").embed_images(images)
    # batch_size 2 with 5 images also exercises a last batch of 1 (dynamic batch axis).
    onnx = Embedder(small_model, image_size=64, backend="onnx", batch_size=2)
    assert onnx.device.type == "cpu"
    vectors = onnx.embed_images(images)
    assert vectors.shape == reference.shape
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(vectors * reference, axis=1))) > 0.9999


def _cosines(spec: str, image_size: int) -> np.ndarray:
    images = _images(6, seed=2)
    reference = load_model(spec, device="cpu", image_size=image_size, backend="torch")
    onnx = load_model(spec, device="cpu", image_size=image_size)
    assert onnx.backend == "onnx"
    return np.sum(onnx.embed_images(images) * reference.embed_images(images), axis=1)


@pytest.mark.parametrize("kind", ["fine-tuned", "projection-head"])
def test_onnx_matches_torch_for_stored_model_files(kind, tmp_path):
    """Every kind of model file training stores embeds the same through ONNX Runtime."""
    import torch

    torch.manual_seed(1)
    config = ModelConfig(
        backbone="tf_efficientnet_lite0",
        neck=True,
        image_size=64,
        embedding_dim=128 if kind == "projection-head" else None,
    )
    model = ReIdModel(config, pretrained=False).eval()
    path = save_model_file(tmp_path / "model.pt", model, class_map=["a", "b"])
    assert float(_cosines(str(path), 64).min()) > 0.9999
    # Exported once beside the weights.
    assert default_onnx_file(str(path), 64) == tmp_path / "model-64.onnx"
    assert (tmp_path / "model-64.onnx").is_file()


def test_zero_shot_model_onnx_matches_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("REID_CACHE_DIR", str(tmp_path))
    assert float(_cosines("imagenet", 96).min()) > 0.9999
    assert (tmp_path / "imagenet-tf_efficientnet_lite0-96.onnx").is_file()


def test_stored_export_is_reused_not_rebuilt(small_model, tmp_path, monkeypatch):
    path = save_model_file(tmp_path / "model.pt", small_model)
    first = load_model(str(path), device="cpu", image_size=64).embed_images(_images(2))

    def no_export(*args, **kwargs):
        raise AssertionError("the stored ONNX file should have been opened, not rebuilt")

    monkeypatch.setattr("reid.onnx.export_onnx", no_export)
    again = load_model(str(path), device="cpu", image_size=64).embed_images(_images(2))
    np.testing.assert_allclose(first, again, atol=1e-6)


def test_export_older_than_its_weights_is_rebuilt(small_model, tmp_path):
    import os

    path = save_model_file(tmp_path / "model.pt", small_model)
    stale = tmp_path / "model-64.onnx"
    stale.write_bytes(b"not the current export")
    os.utime(stale, (path.stat().st_mtime - 60,) * 2)
    embedder = load_model(str(path), device="cpu", image_size=64)
    assert embedder.embed_images(_images(1)).shape == (1, small_model.embedding_dim)
    assert stale.read_bytes() != b"not the current export"
