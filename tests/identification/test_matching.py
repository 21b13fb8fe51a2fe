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
from tests.factories import AnnotationFactory, IndividualFactory, random_embeddings

pytestmark = pytest.mark.django_db


def test_search_timeout_marks_identification_failed_with_message(monkeypatch) -> None:  # noqa: ANN001
    species = species_register(name="Dog")
    version = zero_shot_version()
    annotations = [
        AnnotationFactory(
            image__encounter__species=species,
            individual=IndividualFactory(species=species) if i else None,
        )
        for i in range(5)
    ]
    random_embeddings(annotations, species=species, version=version)
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


def _texture(seed: int, patch_from: np.ndarray | None = None, patch: int = 0) -> np.ndarray:
    """A photo of random texture; ``patch_from`` lends it a square of another (a few true
    keypoint matches)."""
    from PIL import Image

    noise = (np.random.default_rng(seed).random((60, 80)) * 255).astype(np.uint8)
    pixels = np.asarray(Image.fromarray(noise).resize((320, 240), Image.BICUBIC).convert("RGB"))
    pixels = pixels.copy()
    if patch_from is not None:
        pixels[60 : 60 + patch, 60 : 60 + patch] = patch_from[60 : 60 + patch, 60 : 60 + patch]
    return pixels


def _textured_photo(pixels: np.ndarray, **annotation: object):  # noqa: ANN003, ANN202
    """An annotation of the whole photo, stored losslessly (PNG) so keypoints are exact."""
    import io

    from django.core.files.base import ContentFile
    from PIL import Image

    from tests.factories import ImageFactory

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    image = ImageFactory(
        file=ContentFile(buffer.getvalue(), name="photo.png"), width=320, height=240, **annotation
    )
    return AnnotationFactory(image=image, bbox_w=320, bbox_h=240)


@pytest.mark.parametrize("method", ["embedding", "local", "fused", "calibrated"])
def test_the_search_stores_the_score_its_method_ranked_by_and_the_review_keeps_the_order(
    method,
) -> None:  # noqa: ANN001
    """End to end through ``annotation_identify`` with real keypoints: each stored row's score
    is ``method_score`` of its cosine and inliers, the stored order is ``reid.ranking.rank``'s
    (what ``evaluate`` ranks with) and the review page's. With the hand-set fusion, the
    reported flip: 0.85 cosine without inliers ranks below 0.50 with a few."""
    from identification.models import SpeciesModel
    from identification.selectors.review import animal_review
    from identification.services.matching import species_calibrator
    from reid.fusion import FusionCalibrator
    from reid.ranking import Candidate, method_score, rank
    from tests.factories import EncounterFactory

    species = species_register(name="Chimpanzee")
    setting = SpeciesModel.objects.get(species=species)
    setting.ranking_method = method
    if method == "calibrated":
        fit = FusionCalibrator((30.0, -20.0), (0.01, 0.0), fitted_pairs=100)
        setting.calibration = {**fit.to_dict(), "local_method": setting.local_method}
        setting.calibration_version = setting.model_version
    setting.save()
    version = setting.model_version
    rng = np.random.default_rng(3)
    query_vector = rng.normal(size=version.embedding_dim)
    query_vector /= np.linalg.norm(query_vector)

    def embed(annotation, cosine: float) -> None:  # noqa: ANN001
        other = rng.normal(size=query_vector.shape)
        other -= (other @ query_vector) * query_vector
        vector = cosine * query_vector + np.sqrt(1 - cosine**2) * other / np.linalg.norm(other)
        Embedding.objects.create(
            annotation=annotation, model_version=version, species=species, vector=vector.tolist()
        )

    query_pixels = _texture(1)
    query = _textured_photo(query_pixels, encounter=EncounterFactory(species=species))
    embed(query, 1.0)
    gallery = {  # code: (texture, cosine)
        "A": (_texture(2), 0.85),
        "B": (_texture(3, query_pixels, patch=28), 0.50),
        "C": (_texture(4, query_pixels, patch=60), 0.70),
        "D": (_texture(5), 0.90),
    }
    for code, (pixels, cosine) in gallery.items():
        individual = IndividualFactory(species=species, code=code)
        photo = _textured_photo(pixels, encounter=EncounterFactory(species=species))
        photo.individual = individual
        photo.save()
        embed(photo, cosine)

    identification = annotation_identify(annotation_id=query.pk)
    assert identification.state == Identification.State.READY
    rows = list(identification.candidates.order_by("rank"))
    calibrator = species_calibrator(setting=setting)
    for row in rows:
        expected = method_score(method, row.embedding_score, row.inlier_count, calibrator)
        assert row.score == pytest.approx(expected)
    evaluated = rank(
        [Candidate(r.individual_id, r.gallery_annotation_id, r.embedding_score, r.inlier_count)
         for r in rows],
        method,
        calibrator,
    )  # fmt: skip
    order = [r.individual_id for r in rows]
    assert order == [c.individual_id for c in evaluated]
    assert [c.individual_id for c in animal_review(annotation=query).candidates] == order
    codes = "".join(r.individual.code for r in rows)
    if method == "embedding":
        assert codes == "DACB" and all(r.inlier_count is None for r in rows)
    if method == "fused":
        by_code = {r.individual.code: r for r in rows}
        a, b = by_code["A"], by_code["B"]
        assert a.inlier_count == 0 and 5 <= b.inlier_count <= 13  # the flip's precondition
        assert codes.index("B") < codes.index("A") and a.fused_score > b.fused_score


def test_a_search_reads_its_shortlists_keypoints_in_one_query() -> None:
    """A search matches ~20 gallery photos: their keypoints come in one read, however many
    there are, and photos never extracted before are extracted and stored on the way."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from identification.models import LocalFeatures, SpeciesModel
    from identification.services.matching import candidates_shortlist, gallery_keypoints
    from tests.factories import EncounterFactory

    species = species_register(name="Chimpanzee")
    setting = SpeciesModel.objects.get(species=species)
    version = setting.model_version
    photos = []
    for seed in range(7):
        photo = _textured_photo(_texture(seed), encounter=EncounterFactory(species=species))
        if seed:
            photo.individual = IndividualFactory(species=species)
            photo.save()
        photos.append(photo)
    random_embeddings(photos, species=species, version=version, seed=5)
    query, gallery = photos[0], photos[1:]

    def shortlist_of_query() -> list:
        return candidates_shortlist(
            species_id=species.pk,
            setting=setting,
            vector=np.asarray(Embedding.objects.get(annotation=query).vector),
            query_keypoints=lambda: gallery_keypoints(
                annotation_id=query.pk, method=setting.local_method
            ),
            exclude_annotation_ids=[query.pk],
        )

    first = shortlist_of_query()  # extracts and stores every photo's keypoints
    assert LocalFeatures.objects.filter(annotation__in=gallery).count() == len(gallery)
    with CaptureQueriesContext(connection) as queries:
        again = shortlist_of_query()
    reads = [q["sql"] for q in queries if "identification_localfeatures" in q["sql"]]
    assert len(reads) == 2  # the query's own keypoints, then the whole shortlist's
    assert [(c.individual_id, c.inliers) for c in again] == [
        (c.individual_id, c.inliers) for c in first
    ]
    assert len(first) == len(gallery) and all(c.inliers is not None for c in first)
