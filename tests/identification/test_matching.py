"""Failures of the search are errors the user sees, never an empty candidate list."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from identification.models import Embedding, Identification
from identification.selectors import search as selectors
from identification.services.matching import SearchFailed, annotation_identify
from identification.services.models import zero_shot_version
from identification.services.pipeline import species_register
from tests.factories import AnnotationFactory, IndividualFactory

pytestmark = pytest.mark.django_db


def test_search_timeout_marks_identification_failed_with_message(monkeypatch) -> None:  # noqa: ANN001
    species = species_register(name="Dog")
    version = zero_shot_version()
    rng = np.random.default_rng(0)
    annotations = [
        AnnotationFactory(
            image__encounter__species=species,
            individual=IndividualFactory(species=species) if i else None,
        )
        for i in range(5)
    ]
    for annotation in annotations:
        vector = rng.normal(size=version.embedding_dim)
        Embedding.objects.create(
            annotation=annotation,
            model_version=version,
            species=species,
            vector=(vector / np.linalg.norm(vector)).tolist(),
        )
    slow_sql = selectors.nearest_sql

    def sleepy_sql(**kwargs) -> str:  # noqa: ANN003 - a search slower than the timeout allows
        return slow_sql(**kwargs).replace(
            "SELECT e.annotation_id", "SELECT pg_sleep(0.2), e.annotation_id"
        )

    monkeypatch.setattr(selectors, "nearest_sql", sleepy_sql)
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 50")
    try:
        with pytest.raises(SearchFailed):  # the task retries exactly this error
            annotation_identify(annotation_id=annotations[0].pk)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
    identification = Identification.objects.get(annotation=annotations[0])
    assert identification.state == Identification.State.FAILED
    assert "search for candidates failed" in identification.error
    assert "statement timeout" in identification.error
    assert not identification.candidates.exists()

    # The retry the task makes succeeds once the database answers, and clears the reason.
    monkeypatch.setattr(selectors, "nearest_sql", slow_sql)
    annotation_identify(annotation_id=annotations[0].pk)
    identification.refresh_from_db()
    assert identification.state == Identification.State.READY and not identification.error
    assert identification.candidates.count() == 4


def test_migration_backfills_each_candidates_score_from_its_cosine_and_inliers() -> None:
    """Rows stored before the score existed get their species' method score; a search that
    matched no keypoints was ranked by the embedding, so its rows get the cosine."""
    import importlib

    from django.apps import apps

    from identification.models import MatchCandidate, SpeciesModel
    from reid.ranking import method_score
    from tests.factories import EncounterFactory, searched_photo

    backfill = importlib.import_module(
        "identification.migrations.0012_matchcandidate_score"
    ).scores_backfill
    fused, local = species_register(name="Dog"), species_register(name="Cow")
    SpeciesModel.objects.filter(species=local).update(ranking_method="local")
    rows = {}
    for species, evidence, method in (
        (fused, [(0.85, 0), (0.50, 8)], None),
        (local, [(0.85, 3), (0.50, 8)], None),
        (fused, [(0.70, None), (0.60, None)], "embedding"),  # before a switch to fused
    ):
        photo = searched_photo(
            encounter=EncounterFactory(species=species),
            evidence=[(IndividualFactory(species=species), c, n) for c, n in evidence],
            method=method,
        )
        rows[photo.pk] = {c.pk: c.score for c in photo.identification.candidates.all()}
    MatchCandidate.objects.update(score=0.0)  # as the column is added
    backfill(apps, None)
    stored = {c.pk: c.score for c in MatchCandidate.objects.all()}
    for expected in rows.values():
        assert {pk: stored[pk] for pk in expected} == pytest.approx(expected)
    dog = MatchCandidate.objects.get(
        embedding_score=0.85, identification__annotation__species=fused
    )
    assert dog.score == pytest.approx(method_score("fused", 0.85, 0))
    assert MatchCandidate.objects.get(embedding_score=0.70).score == pytest.approx(0.70)
