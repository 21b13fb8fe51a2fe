"""The per-species vector indexes.

pgserver ships pgvector 0.6.2, which has no iterative index scans: an HNSW scan filtered by
species afterwards can return fewer rows than asked. So each (species, model version) gets a
partial HNSW index holding only its rows, which every search uses.

A bulk load (an import larger than what the species already holds) drops the index first
and builds it once the load's last vector is stored: maintaining HNSW row by row cost 42 ms
per 1,280-d vector against 2 ms without it (600 cow vectors, BENCHMARKS.md). Until then the
species' search is an exact scan, correct and fast enough at that size.
"""

from __future__ import annotations

from django.db import connection

from identification.models import EmbeddingJob, ModelVersion, SpeciesModel
from identification.selectors import embedding_index_name

BULK_LOAD_MIN = 500  # smaller loads keep the index and update it row by row


def embedding_index_ensure(*, species_id: int, version: ModelVersion) -> str:
    """Create the partial HNSW index of one species under one model version (idempotent)."""
    name = embedding_index_name(species_id=species_id, version_id=version.pk)
    dim = int(version.embedding_dim)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON identification_embedding "
            f"USING hnsw ((vector::vector({dim})) vector_cosine_ops) "
            f"WHERE species_id = {int(species_id)} AND model_version_id = {int(version.pk)}"
        )
    return name


def embedding_index_drop_for_load(*, species_id: int, version: ModelVersion, rows: int) -> bool:
    """Drop the species' index before loading ``rows`` vectors, if that is a bulk load.

    Returns:
        True when it was dropped (the last batch of the load builds it again).
    """
    if rows < BULK_LOAD_MIN:
        return False
    stored = EmbeddingJob.objects.filter(
        annotation__species_id=species_id, model_version=version, state=EmbeddingJob.State.DONE
    ).count()
    if rows < stored:
        return False
    name = embedding_index_name(species_id=species_id, version_id=version.pk)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {name}")
    return True


def embedding_indexes_restore(*, pairs: set[tuple[int, int]] | None = None) -> int:
    """Build the indexes a bulk load dropped, once nothing of theirs is still queued.

    Args:
        pairs: ``(species_id, version_id)`` to check; default each species' active and
            pending versions.

    Returns:
        How many indexes were built.
    """
    if pairs is None:
        pairs = set()
        for species_id, active, pending in SpeciesModel.objects.values_list(
            "species_id", "model_version_id", "pending_version_id"
        ):
            pairs |= {(species_id, v) for v in (active, pending) if v is not None}
    built = 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'emb_hnsw_%%'")
        existing = {row[0] for row in cursor.fetchall()}
    for species_id, version_id in sorted(pairs):
        if embedding_index_name(species_id=species_id, version_id=version_id) in existing:
            continue
        pending = EmbeddingJob.objects.filter(
            annotation__species_id=species_id,
            model_version_id=version_id,
            state__in=[EmbeddingJob.State.QUEUED, EmbeddingJob.State.RUNNING],
        )
        if not pending.exists():
            embedding_index_ensure(
                species_id=species_id, version=ModelVersion.objects.get(pk=version_id)
            )
            built += 1
    return built
