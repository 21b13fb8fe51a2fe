"""The per-species vector indexes.

pgserver ships pgvector 0.6.2, which has no iterative index scans: an HNSW scan filtered by
species afterwards can return fewer rows than asked. So each (species, model version) gets a
partial HNSW index holding only its rows, which every search uses.
"""

from __future__ import annotations

from django.db import connection

from identification.models import ModelVersion
from identification.selectors.search import embedding_index_name


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
