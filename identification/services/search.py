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
from identification.selectors.search import embedding_index_name

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


def embedding_indexes_restore(*, species_ids: set[int] | None = None) -> int:
    """Build the active versions' indexes a bulk load dropped, once it has finished.

    A pending version's index is built by the switch to it.

    Args:
        species_ids: Species to check; default every species.

    Returns:
        How many indexes were built.
    """
    if species_ids is not None and not species_ids:
        return 0  # e.g. a redelivered batch that found nothing left to claim
    species_settings = SpeciesModel.objects.select_related("model_version")
    if species_ids is not None:
        species_settings = species_settings.filter(species_id__in=species_ids)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'emb_hnsw_%%'")
        existing = {row[0] for row in cursor.fetchall()}
    built = 0
    for setting in species_settings:
        name = embedding_index_name(
            species_id=setting.species_id, version_id=setting.model_version_id
        )
        if name in existing:
            continue
        pending = EmbeddingJob.objects.filter(
            annotation__species_id=setting.species_id,
            model_version_id=setting.model_version_id,
            state__in=[EmbeddingJob.State.QUEUED, EmbeddingJob.State.RUNNING],
        )
        if not pending.exists():
            embedding_index_ensure(species_id=setting.species_id, version=setting.model_version)
            built += 1
    return built
