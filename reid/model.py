"""Re-identification model: timm backbone + GeM pooling + BatchNorm neck + L2-normalised embedding.

The layout follows timm: ``forward_features`` returns the backbone's unpooled feature map and
``forward_head`` turns it into an embedding, so cached training can feed stored feature maps
straight into the trainable top of the network.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reid.backbones import DEFAULT_BACKBONE, create_backbone, read_weight_file

MIEWID_DEFAULT_IMAGE_SIZE = 440


class GeM(nn.Module):
    """Generalised-mean pooling with a learnable exponent.

    ``GeM(x) = (mean_{h,w} clamp(x, eps)^p)^(1/p)``; ``p=1`` is average pooling and
    ``p -> inf`` max pooling (Radenovic et al. 2018, "Fine-tuning CNN Image Retrieval with No
    Human Annotation").

    Args:
        p: initial exponent.
        eps: lower clamp so fractional powers stay defined.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool a ``(B, C, H, W)`` map to ``(B, C)``.

        Args:
            x: feature map.

        Returns:
            Pooled features.
        """
        p = self.p.to(x.dtype)
        return x.clamp(min=self.eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a :class:`ReIdModel` (stored in every checkpoint).

    Attributes:
        backbone: timm model name.
        embedding_dim: size of the optional linear projection; ``None`` keeps the backbone width.
        neck: whether a BatchNorm1d neck follows the pooling.
        gem_p: initial GeM exponent.
        image_size: square input size used at evaluation.
    """

    backbone: str = DEFAULT_BACKBONE
    embedding_dim: int | None = None
    neck: bool = True
    gem_p: float = 3.0
    image_size: int = 224

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from :meth:`to_dict` output, ignoring unknown keys."""
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in fields})


class ReIdModel(nn.Module):
    """Backbone + GeM + optional BatchNorm neck + optional projection + L2 normalisation.

    Args:
        config: architecture description.
        pretrained: load pretrained backbone weights (see :func:`reid.backbones.create_backbone`).
        backbone: an already built backbone to use instead of creating one.
    """

    def __init__(
        self, config: ModelConfig, pretrained: bool = True, backbone: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = (
            backbone
            if backbone is not None
            else create_backbone(config.backbone, pretrained=pretrained)
        )
        width = int(self.backbone.num_features)
        self.feature_dim = width
        self.pool = GeM(p=config.gem_p)
        self.neck: nn.Module = nn.BatchNorm1d(width) if config.neck else nn.Identity()
        self.projection: nn.Module = (
            nn.Linear(width, config.embedding_dim, bias=False)
            if config.embedding_dim
            else nn.Identity()
        )
        self.embedding_dim = int(config.embedding_dim or width)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Run the backbone without pooling.

        Args:
            x: images ``(B, 3, H, W)``, ImageNet-normalised.

        Returns:
            Backbone features (``(B, C, h, w)`` for CNNs).
        """
        return self.backbone.forward_features(x)

    def pool_features(self, features: torch.Tensor) -> torch.Tensor:
        """Pool backbone features to ``(B, C)`` with GeM (or the backbone's own pooling for tokens).

        Args:
            features: output of :meth:`forward_features`.

        Returns:
            Pooled features.
        """
        if features.ndim == 4:
            if features.shape[1] != self.feature_dim and features.shape[-1] == self.feature_dim:
                features = features.permute(0, 3, 1, 2)  # NHWC (e.g. Swin) -> NCHW
            return self.pool(features)
        # Token sequences (ViT-like): GeM is ill-defined for signed tokens, use timm's pooling.
        return self.backbone.forward_head(features, pre_logits=True)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Turn backbone features into L2-normalised embeddings.

        Args:
            features: output of :meth:`forward_features`.

        Returns:
            Embeddings ``(B, embedding_dim)`` with unit L2 norm.
        """
        pooled = self.pool_features(features)
        embedded = self.projection(self.neck(pooled.float()))
        return F.normalize(embedded, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed images.

        Args:
            x: images ``(B, 3, H, W)``.

        Returns:
            Embeddings ``(B, embedding_dim)`` with unit L2 norm.
        """
        return self.forward_head(self.forward_features(x))


def imagenet_model(backbone: str = DEFAULT_BACKBONE) -> ReIdModel:
    """The zero-shot baseline: ImageNet EfficientNet-Lite0 (or ``backbone``) + GeM(p=3) + L2
    norm, no neck."""
    return ReIdModel(ModelConfig(backbone=backbone, neck=False, embedding_dim=None))


def is_miewid_dir(path: str | Path) -> bool:
    """Tell whether ``path`` is a local MiewID snapshot (Hugging Face ``MiewIdNet`` config)."""
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        return False
    config = json.loads(config_path.read_text())
    architectures = " ".join(config.get("architectures", []))
    return "MiewId" in architectures or ("model_name" in config and "architecture" not in config)


def _miewid_key(key: str) -> str | None:
    """Map a MiewID state-dict key to a :class:`ReIdModel` key (``None``: not used)."""
    if "backbone." in key:
        rest = key[key.index("backbone.") + len("backbone.") :]
        if rest.startswith("global_pool.p"):
            return "pool.p"
        if rest.startswith(("classifier.", "global_pool.")):
            return None
        return "backbone." + rest
    tail = key.split(".", 1)[1] if key.startswith("model.") else key
    if tail in ("pooling.p", "global_pool.p"):
        return "pool.p"
    if tail.startswith("bn."):
        return "neck." + tail[len("bn.") :]
    return None  # ArcFace head ("final.*") and anything else used only in training


def load_miewid_dir(path: str | Path) -> tuple[ReIdModel, int]:
    """Load a MiewID model from a local snapshot of its Hugging Face repository.

    The hub model (``conservationxlabs/miewid-msv3``) is loaded upstream with
    ``AutoModel.from_pretrained(..., trust_remote_code=True)``; its network is a timm backbone
    (``config["model_name"]``, ``efficientnetv2_rw_m``) followed by GeM pooling and a
    BatchNorm1d ``bn`` (Otarashvili et al. 2024, "Multispecies Animal Re-ID Using a Large
    Community-Curated Dataset"). This loader rebuilds the same network as a :class:`ReIdModel`
    without executing remote code and without the ``transformers`` package.

    Args:
        path: folder with ``config.json`` and ``model.safetensors`` or ``pytorch_model.bin``.

    Returns:
        The model in eval mode and its input size.

    Raises:
        WeightMappingError-like ``ValueError`` when backbone or neck weights are missing.
    """
    directory = Path(path)
    config = json.loads((directory / "config.json").read_text())
    image_size = int(config.get("image_size", MIEWID_DEFAULT_IMAGE_SIZE))
    model = ReIdModel(
        ModelConfig(
            backbone=config.get("model_name", "efficientnetv2_rw_m"),
            neck=True,
            embedding_dim=None,
            image_size=image_size,
        ),
        pretrained=False,
    )
    source = read_weight_file(directory)
    mapped = {}
    for key, tensor in source.items():
        new_key = _miewid_key(key)
        if new_key is not None:
            mapped[new_key] = tensor
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"MiewID snapshot {directory} does not fit {config.get('model_name')}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model.eval(), image_size
