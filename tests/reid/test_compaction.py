"""PCA(-whitening) compaction of embeddings: fit, apply, save and load."""

from __future__ import annotations

import numpy as np
import pytest

from reid.compaction import CompactedEmbedder, Compaction


def _vectors(n: int = 400, dim: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Uneven variance, as a network's features have: four strong columns, then weak ones.
    scales = np.r_[[10.0, 8.0, 6.0, 4.0], np.linspace(1.0, 0.1, dim - 4)]
    return (rng.standard_normal((n, dim)) * scales + 3.0).astype(np.float32)


def test_whitened_components_have_unit_variance_and_rows_unit_norm() -> None:
    vectors = _vectors()
    compaction = Compaction.fit(vectors, dim=16, whiten=True)
    projected = (vectors - compaction.mean) @ compaction.projection
    np.testing.assert_allclose(projected.std(axis=0, ddof=1), 1.0, rtol=1e-3)
    compact = compaction.apply(vectors)
    assert compact.shape == (400, 16) and compact.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(compact, axis=1), 1.0, rtol=1e-5)


def test_pca_keeps_the_directions_of_largest_variance() -> None:
    compaction = Compaction.fit(_vectors(), dim=4, whiten=False)
    # The kept components point along the four strong columns.
    assert set(np.abs(compaction.projection).argmax(axis=0)) == {0, 1, 2, 3}


def test_saved_compaction_loads_to_the_same_map(tmp_path) -> None:  # noqa: ANN001
    vectors = _vectors()
    compaction = Compaction.fit(vectors, dim=8, whiten=True)
    loaded = Compaction.load(compaction.save(tmp_path / "models" / "map.npz"))
    assert loaded.kind == "pca-whiten" and loaded.dim == 8
    np.testing.assert_array_equal(loaded.apply(vectors), compaction.apply(vectors))


def test_too_few_vectors_or_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="needs more than 16 vectors"):
        Compaction.fit(_vectors(n=10), dim=16)
    compaction = Compaction.fit(_vectors(), dim=8)
    with pytest.raises(ValueError, match="expected 64-d vectors"):
        compaction.apply(np.zeros((2, 32), np.float32))


def test_compacted_embedder_compacts_what_the_network_gives() -> None:
    class Network:
        image_size, backend, embedding_dim = 32, "onnx", 64

        def embed_images(self, images: list) -> np.ndarray:
            return _vectors(n=len(images), seed=len(images))

    compaction = Compaction.fit(_vectors(), dim=8, whiten=True)
    embedder = CompactedEmbedder(Network(), compaction)
    assert embedder.embedding_dim == 8 and embedder.image_size == 32
    np.testing.assert_array_equal(
        embedder.embed_images([None] * 5), compaction.apply(_vectors(n=5, seed=5))
    )
    with pytest.raises(ValueError, match="maps 16-d vectors"):
        CompactedEmbedder(Network(), Compaction.random(16, dim=8))
