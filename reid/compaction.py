"""Compact embeddings: a fitted linear map from the network's vector to a shorter stored one.

PCA (optionally whitened) is the classic retrieval post-processing step: centre on the
gallery mean, keep the ``dim`` directions of largest variance, re-normalise. Stored vectors,
search, calibration and evaluation all see the compacted vector, so the map is saved with the
model version (``.npz``) and applied wherever that version embeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Compaction:
    """``apply(x) = normalise((x - mean) @ projection)``.

    Attributes:
        mean: ``(D,)`` centre subtracted first.
        projection: ``(D, d)`` map to the stored dimension.
        kind: how it was made (``"pca"``, ``"pca-whiten"``, ``"random"``).
    """

    mean: np.ndarray
    projection: np.ndarray
    kind: str

    @property
    def dim(self) -> int:
        return int(self.projection.shape[1])

    @property
    def input_dim(self) -> int:
        return int(self.projection.shape[0])

    @classmethod
    def fit(cls, vectors: np.ndarray, dim: int = 256, whiten: bool = False) -> Compaction:
        """Fit PCA (whitened: each kept component scaled to unit variance) on ``vectors``.

        Raises:
            ValueError: with fewer vectors than ``dim`` + 1 or ``dim`` above the input size.
        """
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 2 or dim > vectors.shape[1] or len(vectors) <= dim:
            raise ValueError(
                f"PCA to {dim} dimensions needs more than {dim} vectors of at least {dim} "
                f"dimensions, got {vectors.shape}"
            )
        mean = vectors.mean(axis=0)
        _, singular, components = np.linalg.svd(vectors - mean, full_matrices=False)
        projection = components[:dim].T
        if whiten:
            std = singular[:dim] / np.sqrt(len(vectors) - 1)
            projection = projection / np.maximum(std, 1e-12 * std[0])
        kind = "pca-whiten" if whiten else "pca"
        return cls(mean.astype(np.float32), projection.astype(np.float32), kind)

    @classmethod
    def random(cls, input_dim: int, dim: int = 256, seed: int = 0) -> Compaction:
        """A seeded random orthogonal projection (no fit, no centring)."""
        gaussian = np.random.default_rng(seed).standard_normal((input_dim, dim))
        orthogonal, _ = np.linalg.qr(gaussian)
        return cls(np.zeros(input_dim, np.float32), orthogonal.astype(np.float32), "random")

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Compact ``(N, D)`` vectors to ``(N, dim)`` float32 rows of unit L2 norm."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[-1] != self.input_dim:
            raise ValueError(f"expected {self.input_dim}-d vectors, got {vectors.shape[-1]}-d")
        compact = (vectors - self.mean) @ self.projection
        norms = np.linalg.norm(compact, axis=-1, keepdims=True)
        return (compact / np.maximum(norms, 1e-12)).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            np.savez(handle, mean=self.mean, projection=self.projection, kind=self.kind)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Compaction:
        with np.load(Path(path)) as data:
            return cls(data["mean"], data["projection"], str(data["kind"]))


class CompactedEmbedder:
    """An embedder (:class:`reid.inference.Embedder`) whose vectors pass through a compaction.

    Every place that embeds under a compacted model version uses this, so stored, queried and
    evaluated vectors are the same compacted ones.
    """

    def __init__(self, embedder, compaction: Compaction) -> None:  # noqa: ANN001
        if compaction.input_dim != embedder.embedding_dim:
            raise ValueError(
                f"the compaction maps {compaction.input_dim}-d vectors but the network "
                f"gives {embedder.embedding_dim}-d"
            )
        self.embedder = embedder
        self.compaction = compaction
        self.image_size = embedder.image_size
        self.backend = embedder.backend
        self.embedding_dim = compaction.dim

    def embed_images(self, images) -> np.ndarray:  # noqa: ANN001
        return self.compaction.apply(self.embedder.embed_images(images))

    def embed_records(self, records) -> np.ndarray:  # noqa: ANN001
        return self.compaction.apply(self.embedder.embed_records(records))
