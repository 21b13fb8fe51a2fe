"""Compact stored vectors: a PCA-whitened version, adopted through the model switch."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from catalogue.services.imports import dataset_plan
from identification.models import Embedding, EmbeddingJob, SpeciesModel
from identification.selectors.search import nearest_identified_annotations
from identification.services.compaction import compact_version_adopt, compact_version_create
from identification.services.embedding_run import embedding_jobs_run
from identification.services.model_switch import species_model_switch_if_ready
from identification.services.models import zero_shot_version
from identification.services.pipeline import dataset_ingest, species_register
from reid.compaction import Compaction
from wildweb.errors import ServiceError

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def _embed_queued() -> None:
    queued = EmbeddingJob.objects.filter(state=EmbeddingJob.State.QUEUED)
    embedding_jobs_run(job_ids=list(queued.values_list("pk", flat=True)))


@pytest.fixture
def chimps(shared_datasets, django_capture_on_commit_callbacks):  # noqa: ANN001, ANN201
    species = species_register(name="Chimpanzee")
    plan = dataset_plan(
        metadata_csv=shared_datasets / "chimp_faces_demo" / "metadata.csv",
        species=species,
        max_individuals=10,
        images_per_individual=4,
    )
    with django_capture_on_commit_callbacks(execute=False):  # embed here, not on a worker
        dataset_ingest(plan=plan)
    _embed_queued()
    return species


def test_compact_version_round_trip_stores_searches_and_switches(
    chimps, django_capture_on_commit_callbacks
) -> None:  # noqa: ANN001
    source = zero_shot_version()
    full = dict(
        Embedding.objects.filter(model_version=source).values_list("annotation_id", "vector")
    )
    assert len(full) == 40

    compacted = compact_version_create(source=source, dim=8)
    assert (compacted.embedding_dim, compacted.compaction) == (8, "pca-whiten")
    with django_capture_on_commit_callbacks(execute=False):
        assert compact_version_adopt(version=compacted) == [chimps]
    setting = SpeciesModel.objects.get(species=chimps)
    assert (setting.model_version, setting.pending_version) == (source, compacted)
    _embed_queued()
    with connection.cursor() as cursor:  # CREATE INDEX refuses the test transaction's
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # deferred foreign-key checks
    assert species_model_switch_if_ready(species=chimps)

    setting.refresh_from_db()
    assert setting.model_version == compacted and setting.previous_version == source
    stored = dict(
        Embedding.objects.filter(model_version=compacted).values_list("annotation_id", "vector")
    )
    assert stored.keys() == full.keys()
    # What is stored is the map applied to the network's vector, for every photo.
    compaction = Compaction.load(compacted.compaction_file)
    ids = sorted(full)
    expected = compaction.apply(np.asarray([full[i] for i in ids]))
    np.testing.assert_allclose(np.asarray([stored[i] for i in ids]), expected, atol=2e-4)
    # The species' search runs at the compact dimension and finds the photo itself first.
    neighbours = nearest_identified_annotations(
        species_id=chimps.pk, version_id=compacted.pk, dim=8, vector=expected[0], k=5
    )
    assert neighbours[0].annotation_id == ids[0] and len(neighbours) == 5


def test_compaction_refuses_too_few_vectors_and_a_compacted_source(chimps) -> None:  # noqa: ANN001
    source = zero_shot_version()
    with pytest.raises(ServiceError, match="needs at least 64"):
        compact_version_create(source=source, dim=16)
    compacted = compact_version_create(source=source, dim=8)
    with pytest.raises(ServiceError, match="compacted already"):
        compact_version_create(source=compacted, dim=4)
    with pytest.raises(CommandError, match="needs at least 64"):
        call_command("compact_vectors", "--dim", "16")
