"""Model versions: which one a species uses, and loading it in a worker."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from catalogue.models import Species
from identification.models import ModelVersion, SpeciesModel
from identification.services.search import embedding_index_ensure

if TYPE_CHECKING:  # torch stays out of the web process
    from reid.compaction import CompactedEmbedder
    from reid.inference import Embedder

ZERO_SHOT_NAME = "v0-imagenet-lite0-gem"


def zero_shot_version() -> ModelVersion:
    """Version 0: ImageNet lite0 + GeM, so the app identifies before any training."""
    version, _ = ModelVersion.objects.get_or_create(
        name=ZERO_SHOT_NAME,
        defaults={
            "backbone": "tf_efficientnet_lite0",
            "weights": "imagenet",
            "embedding_dim": 1280,
            "image_size": 224,
        },
    )
    return version


def species_model_setting(*, species: Species) -> SpeciesModel:
    """The species' model setting, created on first use with version 0."""
    setting = SpeciesModel.objects.select_related("model_version").filter(species=species).first()
    if setting is None:
        setting, _ = SpeciesModel.objects.get_or_create(
            species=species, defaults={"model_version": zero_shot_version()}
        )
        embedding_index_ensure(species_id=species.pk, version=setting.model_version)
    return setting


def model_version_embedder(*, version: ModelVersion) -> Embedder | CompactedEmbedder:
    """The loaded network of a version, cached per worker process.

    On a CPU it runs through ONNX Runtime from the version's ONNX file, which is exported the
    first time any worker loads the version and kept (beside a trained model's weights; the
    zero-shot model's under ``PRIVATE_ROOT/models``), so no later worker start exports again.
    A compacted version (``compaction``) passes the network's vectors through its fitted map.
    """
    onnx_file = None
    if version.weights == "imagenet":
        name = f"{ZERO_SHOT_NAME}-{version.image_size}.onnx"  # one export for its compactions
        onnx_file = str(Path(settings.PRIVATE_ROOT) / "models" / name)
    embedder = _embedder(version.weights, version.image_size, onnx_file)
    if not version.compaction:
        return embedder
    return _compacted(embedder, version.compaction_file)


@lru_cache(maxsize=2)
def _embedder(weights: str, image_size: int, onnx_file: str | None) -> Embedder:
    from reid.inference import load_model

    return load_model(weights, image_size=image_size, onnx_file=onnx_file)


@lru_cache(maxsize=2)
def _compacted(embedder: Embedder, compaction_file: str) -> CompactedEmbedder:
    from reid.compaction import CompactedEmbedder, Compaction

    return CompactedEmbedder(embedder, Compaction.load(compaction_file))
