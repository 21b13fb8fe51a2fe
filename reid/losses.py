"""Sub-center ArcFace with per-class (dynamic) angular margins."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def dynamic_margins(
    class_counts: Sequence[int] | np.ndarray, margin_min: float = 0.2, margin_max: float = 0.5
) -> np.ndarray:
    """Per-class additive angular margins that grow as classes get rarer.

    ``t_c = n_c ** (-1/4)`` is rescaled linearly so that the rarest class gets ``margin_max``
    and the most common ``margin_min`` (Ha et al. 2020, "Google Landmark Recognition 2020
    Competition Third Place Solution", as used by MiewID, Otarashvili et al. 2024). When all
    classes are equally common every class gets ``margin_max``.

    Args:
        class_counts: number of training images per class (all ≥ 1).
        margin_min: margin of the most common class, radians.
        margin_max: margin of the rarest class, radians.

    Returns:
        Margins in radians, ``float32`` array of length ``len(class_counts)``.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.size == 0 or np.any(counts < 1):
        raise ValueError("class_counts must be non-empty and ≥ 1")
    t = counts**-0.25
    spread = t.max() - t.min()
    if spread <= 0:
        return np.full(counts.shape, margin_max, dtype=np.float32)
    scaled = (t - t.min()) / spread * (margin_max - margin_min) + margin_min
    return scaled.astype(np.float32)


class SubCenterArcFace(nn.Module):
    """Sub-center ArcFace loss with one additive angular margin per class.

    Each class owns ``k`` sub-center vectors; the cosine to a class is the maximum over its
    sub-centers, so noisy or multi-modal classes (day/night, left/right) need not collapse to
    one center (Deng et al. 2020, "Sub-center ArcFace: Boosting Face Recognition by Large-Scale
    Noisy Web Faces", ECCV). The target logit is ``s * cos(theta + m_c)`` (Deng et al. 2019,
    "ArcFace"); ``m_c`` may differ per class (dynamic margins, see :func:`dynamic_margins`).

    The module owns its weight matrix, so it goes into the optimizer and into checkpoints.

    Args:
        embedding_dim: width of the embeddings.
        num_classes: number of classes.
        k: sub-centers per class.
        scale: logit scale ``s``.
        margins: one margin for all classes or one per class, radians.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        k: int = 3,
        scale: float = 30.0,
        margins: float | Sequence[float] | np.ndarray = 0.5,
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.k = k
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(num_classes * k, embedding_dim))
        nn.init.xavier_uniform_(self.weight)
        margin_values = np.broadcast_to(np.asarray(margins, dtype=np.float32), (num_classes,))
        self.register_buffer("margins", torch.tensor(np.array(margin_values)))

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine between embeddings and each class (max over its sub-centers).

        Args:
            embeddings: ``(B, D)`` embeddings (normalised here).

        Returns:
            ``(B, num_classes)`` cosines.
        """
        cosines = F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float()))
        return cosines.view(-1, self.num_classes, self.k).amax(dim=2)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scaled logits with the angular margin applied to each sample's target class.

        Args:
            embeddings: ``(B, D)`` embeddings.
            labels: ``(B,)`` class indices.

        Returns:
            ``(B, num_classes)`` logits.
        """
        cosine = self.cosine(embeddings)
        margin = self.margins[labels].unsqueeze(1)
        sine = torch.sqrt((1.0 - cosine.square()).clamp(min=0.0))
        with_margin = cosine * torch.cos(margin) - sine * torch.sin(margin)
        # Past theta = pi - m, cos(theta + m) stops decreasing; use the linear continuation
        # (as in the ArcFace reference implementation) so the target logit stays monotonic.
        threshold = torch.cos(math.pi - margin)
        fallback = cosine - torch.sin(math.pi - margin) * margin
        with_margin = torch.where(cosine > threshold, with_margin, fallback)
        one_hot = F.one_hot(labels, self.num_classes).to(cosine.dtype)
        return self.scale * (one_hot * with_margin + (1.0 - one_hot) * cosine)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of :meth:`logits`.

        Args:
            embeddings: ``(B, D)`` embeddings.
            labels: ``(B,)`` class indices.

        Returns:
            Scalar loss.
        """
        return F.cross_entropy(self.logits(embeddings, labels), labels)
