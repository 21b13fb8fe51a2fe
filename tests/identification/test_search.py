"""Vector search: per-species partial HNSW index, used by the planner, never short of results."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from catalogue.models import Annotation
from identification.models import Embedding
from identification.selectors.search import (
    embedding_index_name,
    nearest_identified_annotations,
    nearest_plan,
)
from identification.services.models import zero_shot_version
from identification.services.pipeline import species_register
from tests.factories import AnnotationFactory, IndividualFactory

pytestmark = pytest.mark.django_db
DIM = 1280


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def add_embeddings(species, vectors: np.ndarray, identified: bool) -> list[Annotation]:  # noqa: ANN001
    version = zero_shot_version()
    annotations = []
    for vector in vectors:
        annotation = AnnotationFactory(
            image__encounter__species=species,
            individual=IndividualFactory(species=species) if identified else None,
        )
        Embedding.objects.create(
            annotation=annotation, model_version=version, species=species, vector=vector.tolist()
        )
        annotations.append(annotation)
    return annotations


def test_search_query_plan_uses_the_species_partial_index() -> None:
    rng = np.random.default_rng(0)
    fish, dogs = species_register(name="Goldfish"), species_register(name="Dog")
    add_embeddings(fish, unit(rng.normal(size=(30, DIM))), identified=True)
    add_embeddings(dogs, unit(rng.normal(size=(30, DIM))), identified=True)
    version = zero_shot_version()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE identification_embedding")
    plan = nearest_plan(species_id=fish.pk, version_id=version.pk, dim=DIM)
    index = embedding_index_name(species_id=fish.pk, version_id=version.pk)
    assert f"Index Scan using {index}" in plan, plan[:2000]
    assert "Seq Scan on identification_embedding" not in plan


def test_unidentified_neighbours_never_shorten_the_candidate_list() -> None:
    rng = np.random.default_rng(1)
    species = species_register(name="Manta")
    query = unit(rng.normal(size=DIM))
    # 80 unidentified animals right next to the query, 12 known individuals further away.
    add_embeddings(species, unit(query + 0.05 * rng.normal(size=(80, DIM))), identified=False)
    known = add_embeddings(species, unit(query + 0.8 * rng.normal(size=(12, DIM))), identified=True)
    found = nearest_identified_annotations(
        species_id=species.pk, version_id=zero_shot_version().pk, dim=DIM, vector=query, k=10
    )
    assert len(found) == 10
    assert {n.annotation_id for n in found} <= {a.pk for a in known}
    cosines = [n.cosine for n in found]
    assert cosines == sorted(cosines, reverse=True)


def test_search_never_returns_another_species() -> None:
    rng = np.random.default_rng(2)
    fish, dogs = species_register(name="Goldfish"), species_register(name="Dog")
    query = unit(rng.normal(size=DIM))
    dog_annotations = add_embeddings(
        dogs, unit(query + 0.01 * rng.normal(size=(20, DIM))), identified=True
    )
    fish_annotations = add_embeddings(fish, unit(rng.normal(size=(5, DIM))), identified=True)
    found = nearest_identified_annotations(
        species_id=fish.pk, version_id=zero_shot_version().pk, dim=DIM, vector=query, k=10
    )
    assert {n.annotation_id for n in found} == {a.pk for a in fish_annotations}
    assert not {n.annotation_id for n in found} & {a.pk for a in dog_annotations}


def test_search_matches_exact_cosine_ranking() -> None:
    rng = np.random.default_rng(3)
    species = species_register(name="Chimpanzee")
    vectors = unit(rng.normal(size=(60, DIM)))
    annotations = add_embeddings(species, vectors, identified=True)
    query = unit(rng.normal(size=DIM))
    found = nearest_identified_annotations(
        species_id=species.pk, version_id=zero_shot_version().pk, dim=DIM, vector=query, k=10
    )
    exact = [annotations[i].pk for i in np.argsort(-(vectors @ query))[:10]]
    assert len(set(n.annotation_id for n in found) & set(exact)) >= 9  # HNSW recall on 60 rows
    assert found[0].cosine == pytest.approx(float(np.max(vectors @ query)), abs=1e-4)


def test_region_and_date_scope_keep_k_results_from_inside_the_scope() -> None:
    import datetime as dt

    from identification.selectors.search import SearchScope

    rng = np.random.default_rng(4)
    species = species_register(name="Zebra")
    query = unit(rng.normal(size=DIM))
    near = add_embeddings(species, unit(query + 0.05 * rng.normal(size=(30, DIM))), identified=True)
    far = add_embeddings(species, unit(query + 0.9 * rng.normal(size=(15, DIM))), identified=True)
    inside = {a.pk for a in far}
    for annotation in near:  # the closest animals were all seen elsewhere, long ago
        encounter = annotation.image.encounter
        encounter.latitude, encounter.longitude = 40.0, 10.0
        encounter.observed_at = dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc)
        encounter.save()
    for annotation in far:
        encounter = annotation.image.encounter
        encounter.latitude, encounter.longitude = -2.0, 35.0
        encounter.observed_at = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
        encounter.save()
    for scope in (
        SearchScope(region=(-5.0, 30.0, 0.0, 40.0)),
        SearchScope(observed_after=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)),
    ):
        found = nearest_identified_annotations(
            species_id=species.pk,
            version_id=zero_shot_version().pk,
            dim=DIM,
            vector=query,
            k=10,
            scope=scope,
        )
        assert len(found) == 10 and {n.annotation_id for n in found} <= inside
