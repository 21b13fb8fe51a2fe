"""Compact stored vectors: a PCA-whitened version of a model, fitted on its gallery.

Measured on the shared species (``BENCHMARKS.md``, issue 12): 256-d PCA-whitening fitted on
the whole gallery kept or raised honest top-1 on every species, so a million vectors fit at a
fifth of the size. Fitted without a species' photos it lost 0.02-0.05 top-1 on that species,
so compact again after a new species with many photos joins.

The compacted model is a new :class:`ModelVersion` (same network, plus the map), adopted by
each species through the same pending → switch path as a promoted training run; ranking
keeps the old vectors until a species' last photo has its compact vector.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from django.conf import settings
from django.db.models.functions import Mod

from catalogue.models import Species
from identification.models import Embedding, ModelVersion, SpeciesModel
from identification.services.model_switch import species_version_promote
from wildweb.errors import ServiceError

COMPACT_DIM = 256
# PCA-whitening of d components from fewer than ~4d vectors overfits: 256 components fitted
# on one species' 300 photos dropped its top-1 from 0.77 to 0.39.
MIN_VECTORS_PER_DIM = 4
FIT_SAMPLE = 100_000  # vectors are sampled evenly over the gallery beyond this


def compact_version_create(*, source: ModelVersion, dim: int = COMPACT_DIM) -> ModelVersion:
    """Fit PCA-whitening to ``dim`` on every stored vector of ``source`` and save it.

    Raises:
        ServiceError: ``source`` is compacted already, or has too few vectors to fit.
    """
    if source.compaction:
        raise ServiceError(f"{source.name} is compacted already; compact its network's version.")
    needed = MIN_VECTORS_PER_DIM * dim
    vectors_of = Embedding.objects.filter(model_version=source)
    count = vectors_of.count()
    if count < needed:
        raise ServiceError(
            f"{source.name} has {count} stored vectors; fitting {dim} dimensions needs at "
            f"least {needed}. Import or embed more photos first."
        )
    step = max(1, count // FIT_SAMPLE)  # every step-th row, picked by the database
    stored = (
        vectors_of.alias(bucket=Mod("pk", step)).filter(bucket=0).values_list("vector", flat=True)
    )
    vectors = np.asarray([np.asarray(v) for v in stored], dtype=np.float32)
    from reid.compaction import Compaction

    compaction = Compaction.fit(vectors, dim=dim, whiten=True)
    name = f"{source.name}-pcaw{dim}-{count}"[:100]
    path = Path(settings.PRIVATE_ROOT) / "models" / f"{name}.npz"
    compaction.save(path)
    version, _ = ModelVersion.objects.update_or_create(
        name=name,
        defaults={
            "backbone": source.backbone,
            "weights": source.weights,
            "image_size": source.image_size,
            "embedding_dim": dim,
            "compaction": compaction.kind,
            "compaction_file": str(path),
            "metrics": {"compacted_from": source.name, "fitted_on_vectors": len(vectors)},
        },
    )
    return version


def compact_version_adopt(*, version: ModelVersion) -> list[Species]:
    """Promote ``version`` for every species whose active version is the one it compacts."""
    source = version.metrics.get("compacted_from")
    adopting = list(
        Species.objects.filter(
            pk__in=SpeciesModel.objects.filter(model_version__name=source).values("species_id")
        ).order_by("name")
    )
    for species in adopting:
        species_version_promote(species=species, version=version)
    return adopting
