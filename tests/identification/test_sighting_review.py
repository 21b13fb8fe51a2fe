"""One ranking and one decision per animal of a sighting: all its photos together, split-off,
undo and revert, votes per sighting, and the reported chimpanzee case."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from catalogue.models import Annotation, Encounter
from identification.models import (
    Embedding,
    Identification,
    IdentityDecision,
    SpeciesModel,
    Vote,
)
from identification.selectors.review import animal_review, review_queue
from identification.services.decisions import (
    annotation_animal_join,
    annotation_split_off,
    decision_revert,
    match_decide,
)
from identification.services.matching import species_calibrator
from identification.services.models import species_model_setting
from identification.services.pipeline import species_register
from reid.fusion import FusionCalibrator
from reid.ranking import Candidate, rank, sighting_combine
from tests.factories import (
    AnnotationFactory,
    EncounterFactory,
    ImageFactory,
    IndividualFactory,
    UserFactory,
    ranked_photo,
    searched_photo,
)
from wildweb.errors import ConflictError, ServiceError

pytestmark = pytest.mark.django_db


@pytest.fixture
def chimp_sighting(db):  # noqa: ANN001, ANN201
    """The reported case: two photos of one chimpanzee; each ranks another individual first."""
    species = species_register(name="Chimpanzee")
    akili, bobo, coco = (IndividualFactory(species=species, code=c) for c in ("AK", "BO", "CO"))
    sighting = EncounterFactory(species=species, status=Encounter.Status.AWAITING_REVIEW)
    first = ranked_photo(encounter=sighting, ranking=[(akili, 0.70), (bobo, 0.40)])
    second = ranked_photo(encounter=sighting, ranking=[(bobo, 0.90), (coco, 0.50)])
    return first, second, (akili, bobo, coco)


def test_photos_of_one_sighting_are_ranked_together_by_their_best_evidence(chimp_sighting) -> None:  # noqa: ANN001
    first, second, (akili, bobo, coco) = chimp_sighting
    for photo in (first, second):  # whichever photo the expert opens
        review = animal_review(annotation=photo)
        assert review.photo_ids == [first.pk, second.pk]
        assert [(c.rank, c.individual.code) for c in review.candidates] == [
            (1, "BO"),
            (2, "AK"),
            (3, "CO"),  # only the second photo had Coco among its candidates
        ]
        assert [c.photo_count for c in review.candidates] == [2, 1, 1]
        assert review.candidates[0].best.identification.annotation_id == second.pk


# Candidates whose order differs by method: embedding C A D B, local D B C A, fused D C B A,
# and by the hand-set probability D C A B (what the review ordered by before the score).
EVIDENCE = [("A", 0.85, 0), ("B", 0.50, 8), ("C", 0.90, 4), ("D", 0.70, 30)]
TRUSTS_COSINE = FusionCalibrator((30.0, -20.0), (0.01, 0.0), fitted_pairs=100)


def _species_ranking_by(method: str, *, threshold: float | None = None):  # noqa: ANN202
    """A species ranked by ``method`` (``calibrated`` with a fit under its version)."""
    species = species_register(name=f"Chimpanzee {method}")
    setting = species_model_setting(species=species)
    setting.ranking_method = method
    if method == "calibrated":
        setting.calibration = {**TRUSTS_COSINE.to_dict(), "local_method": setting.local_method}
        setting.calibration_version = setting.model_version
    if threshold is not None:  # fitted under the version that ranks
        setting.calibration_version = setting.model_version
        setting.new_individual_threshold = threshold
    setting.save()
    return species, {code: IndividualFactory(species=species, code=code) for code in "ABCD"}


def _evaluate_order(photo: Annotation) -> list[int]:
    """The order ``evaluate`` gives the photo's stored candidates: ``reid.ranking.rank`` by
    the species' method and calibration, as ``species_evaluate`` ranks each query."""
    setting = species_model_setting(species=photo.species)
    candidates = [
        Candidate(c.individual_id, c.gallery_annotation_id, c.embedding_score, c.inlier_count)
        for c in photo.identification.candidates.all()
    ]
    ranked = rank(candidates, setting.ranking_method, species_calibrator(setting=setting))
    return [c.individual_id for c in ranked]


@pytest.mark.parametrize("method", SpeciesModel.RankingMethod.values)
def test_one_photo_ranks_on_the_review_page_as_evaluate_ranks_it(method) -> None:  # noqa: ANN001
    species, individuals = _species_ranking_by(method)
    photo = searched_photo(
        encounter=EncounterFactory(species=species),
        evidence=[(individuals[code], cosine, inliers) for code, cosine, inliers in EVIDENCE],
    )
    review = animal_review(annotation=photo)
    assert [c.individual_id for c in review.candidates] == _evaluate_order(photo)
    assert [c.best.rank for c in review.candidates] == [1, 2, 3, 4]
    expected = {
        "embedding": "CADB",
        "local": "DBCA",
        "fused": "DCBA",
        "calibrated": "CADB",  # the fitted calibration trusts the cosine
    }[method]
    assert "".join(c.individual.code for c in review.candidates) == expected
    scores = [c.best.score for c in review.candidates]
    assert scores == sorted(scores, reverse=True)


def test_two_photos_combine_as_reid_sighting_combine_says() -> None:
    """Each individual keeps its best photo's score: Bobo's one photo (0.50, 8 inliers) beats
    Akili's best (0.78, 1), though Akili is in both photos and more probable by the
    calibrated probability."""
    species, ind = _species_ranking_by("fused")
    sighting = EncounterFactory(species=species)
    evidence = (
        [(ind["A"], 0.85, 0), (ind["C"], 0.60, 2)],
        [(ind["B"], 0.50, 8), (ind["A"], 0.78, 1)],
    )
    photos = [searched_photo(encounter=sighting, evidence=e) for e in evidence]
    review = animal_review(annotation=photos[0])
    expected = sighting_combine(
        [
            rank([Candidate(i.pk, None, cosine, inliers) for i, cosine, inliers in e], "fused")
            for e in evidence
        ]
    )
    assert [(c.individual_id, c.photo_count) for c in review.candidates] == [
        (c.individual_id, c.photo_count) for c in expected
    ]
    assert [c.best.score for c in review.candidates] == pytest.approx([c.score for c in expected])
    assert "".join(c.individual.code for c in review.candidates) == "BAC"
    akili = review.candidates[1]
    assert akili.photo_count == 2 and akili.best.embedding_score == pytest.approx(0.78)
    assert akili.best.identification.annotation_id == photos[1].pk
    assert akili.best.fused_score > review.candidates[0].best.fused_score  # the probability


def test_the_reported_flip_ranks_the_same_on_the_review_page_and_in_evaluate(client) -> None:  # noqa: ANN001
    """Fused: 0.85 cosine with no inliers against 0.50 with 8. The score (5 cos + log1p)
    ranks the second first; the calibrated probability the first. The page follows the score,
    as evaluate does, and shows it."""
    species, ind = _species_ranking_by("fused")
    photo = searched_photo(
        encounter=EncounterFactory(species=species),
        evidence=[(ind["A"], 0.85, 0), (ind["B"], 0.50, 8)],
    )
    assert _evaluate_order(photo) == [ind["B"].pk, ind["A"].pk]
    client.force_login(UserFactory(role="expert"))
    response = client.get(reverse("review-annotation", args=[photo.pk]))
    shown = [view.candidate for view in response.context["candidates"]]
    assert [c.individual_id for c in shown] == _evaluate_order(photo)
    bobo, akili = (c.best for c in shown)
    assert bobo.score == pytest.approx(5 * 0.50 + np.log1p(8))
    assert bobo.fused_score < akili.fused_score
    page = response.content.decode()
    assert f"score {bobo.score:.2f}" in page and f"match {bobo.fused_score:.2f}" in page
    assert page.index(f"score {bobo.score:.2f}") < page.index(f"score {akili.score:.2f}")
    listed = client.get(reverse("api-candidates", args=[photo.pk])).json()["candidates"]
    assert [(c["individual"]["id"], c["score"], c["fused_score"]) for c in listed] == [
        (c.individual_id, c.score, c.fused_score) for c in (bobo, akili)
    ]


def test_probably_new_follows_the_animals_first_candidate() -> None:
    """Threshold 0.3: the photo whose first candidate leads the animal (Bobo, probability
    0.21) is flagged; the other photo's first (Akili, 0.33, a lower score) is not. The
    animal's first candidate is below the threshold, so the animal is probably new."""
    species, ind = _species_ranking_by("fused", threshold=0.3)
    sighting = EncounterFactory(species=species)
    flagged = searched_photo(encounter=sighting, evidence=[(ind["B"], 0.50, 8)])
    searched_photo(encounter=sighting, evidence=[(ind["A"], 0.85, 0)])
    review = animal_review(annotation=flagged)
    assert [i.probably_new for i in review.identifications] == [True, False]
    assert review.candidates[0].individual.code == "B"
    assert review.candidates[0].best.fused_score < 0.3
    assert review.probably_new
    decision = match_decide(
        annotation=flagged,
        verdict="same",
        individual=ind["B"],
        decided_by=UserFactory(role="expert"),
    )
    assert (decision.confirmed_rank, decision.probably_new) == (1, True)


def test_the_queue_and_the_dashboard_count_the_sighting_once(client, chimp_sighting) -> None:  # noqa: ANN001
    first, second, _ = chimp_sighting
    assert [i.annotation_id for i in review_queue()] == [first.pk]
    client.force_login(UserFactory(role="expert"))
    rows = {r.species.name: r for r in client.get(reverse("dashboard")).context["species_rows"]}
    assert rows["Chimpanzee"].queue_size == 1


def test_expert_reviews_the_sighting_once_and_the_decision_covers_every_photo(
    client, chimp_sighting
) -> None:  # noqa: ANN001
    first, second, (_, bobo, _) = chimp_sighting
    expert = UserFactory(role="expert")
    client.force_login(expert)
    page = client.get(reverse("review-annotation", args=[second.pk])).content.decode()
    assert "Photo 1 of the animal" in page and "Photo 2 of the animal" in page
    assert page.count('data-action="same"') == 3  # one ranking: Bobo, Akili, Coco
    client.post(
        reverse("review-act", args=[second.pk]),
        {"action": "same", "individual": bobo.pk, "expected_individual": ""},
    )
    assert set(Annotation.objects.filter(pk__in=[first.pk, second.pk]).values_list(
        "individual__code", "identity_source")) == {("BO", "expert")}  # fmt: skip
    decision = IdentityDecision.objects.get()  # one audit row for the decision
    assert decision.annotation_ids == [first.pk, second.pk]
    assert (decision.confirmed_rank, decision.probably_new) == (1, False)
    assert set(Identification.objects.filter(annotation__in=[first, second]).values_list(
        "state", flat=True)) == {Identification.State.DECIDED}  # fmt: skip
    assert first.image.encounter.__class__.objects.get(pk=first.image.encounter_id).status == (
        Encounter.Status.IDENTIFIED
    )
    assert not review_queue().exists()


def test_reported_case_a_new_individual_is_every_photo_of_the_sighting(chimp_sighting) -> None:  # noqa: ANN001
    first, second, _ = chimp_sighting
    match_decide(
        annotation=first,
        verdict="new",
        decided_by=UserFactory(role="expert"),
        new_code="SAGU",
        new_name="Sagu",
    )
    assert set(
        Annotation.objects.filter(pk__in=[first.pk, second.pk]).values_list(
            "individual__name", flat=True
        )
    ) == {"Sagu"}
    assert IdentityDecision.objects.count() == 1 and not review_queue().exists()


def test_undo_and_revert_put_every_photo_back(client, chimp_sighting) -> None:  # noqa: ANN001
    first, second, (akili, _, _) = chimp_sighting
    photos = Annotation.objects.filter(pk__in=[first.pk, second.pk])
    expert = UserFactory(role="expert")
    client.force_login(expert)
    act = reverse("review-act", args=[first.pk])
    client.post(act, {"action": "same", "individual": akili.pk, "expected_individual": ""})
    assert set(photos.values_list("individual__code", flat=True)) == {"AK"}
    client.post(act, {"action": "undo"})
    assert set(photos.values_list("individual", flat=True)) == {None}
    assert [i.annotation_id for i in review_queue()] == [first.pk]  # waiting again

    client.post(act, {"action": "new", "code": "SAGU", "expected_individual": ""})
    decision = IdentityDecision.objects.filter(reverted_at__isnull=True).get()
    page = client.get(reverse("review-annotation", args=[second.pk])).content.decode()
    assert "2 photos" in page and reverse("decision-revert", args=[decision.pk]) in page
    client.post(reverse("decision-revert", args=[decision.pk]))
    assert set(photos.values_list("individual", flat=True)) == {None}
    assert IdentityDecision.objects.count() == 2  # the audit keeps both, both reverted
    assert not IdentityDecision.objects.filter(reverted_at__isnull=True).exists()


def test_revert_changes_no_photo_when_one_of_them_changed_since(chimp_sighting) -> None:  # noqa: ANN001
    first, second, (akili, bobo, _) = chimp_sighting
    expert = UserFactory(role="expert")
    decision = match_decide(annotation=first, verdict="same", individual=akili, decided_by=expert)
    Annotation.objects.filter(pk=second.pk).update(individual=bobo)  # changed by other means
    with pytest.raises(ConflictError, match="Someone else changed"):
        decision_revert(decision=decision, reverted_by=expert)
    assert dict(
        Annotation.objects.filter(pk__in=[first.pk, second.pk]).values_list("pk", "individual")
    ) == {first.pk: akili.pk, second.pk: bobo.pk}
    decision.refresh_from_db()
    assert decision.reverted_at is None


def test_a_photo_of_another_animal_is_split_off_and_identified_alone(chimp_sighting) -> None:  # noqa: ANN001
    first, second, (akili, bobo, coco) = chimp_sighting
    expert = UserFactory(role="expert")
    with pytest.raises(ServiceError, match="Only experts"):
        annotation_split_off(annotation=second, split_by=UserFactory(role="volunteer"))
    second = annotation_split_off(annotation=second, split_by=expert)

    assert [i.annotation_id for i in review_queue()] == [first.pk, second.pk]
    assert [c.individual.code for c in animal_review(annotation=first).candidates] == ["AK", "BO"]
    assert [c.individual.code for c in animal_review(annotation=second).candidates] == ["BO", "CO"]
    with pytest.raises(ServiceError, match="already identified on its own"):
        annotation_split_off(annotation=second, split_by=expert)

    match_decide(annotation=first, verdict="same", individual=akili, decided_by=expert)
    second.refresh_from_db()
    assert second.individual is None  # the other animal is not touched
    assert [i.annotation_id for i in review_queue()] == [second.pk]
    decision = match_decide(annotation=second, verdict="same", individual=coco, decided_by=expert)
    assert decision.annotation_ids == [second.pk] and decision.confirmed_rank == 2


def test_an_identified_photo_is_not_split_off_without_reverting_first(chimp_sighting) -> None:  # noqa: ANN001
    first, second, (akili, _, _) = chimp_sighting
    expert = UserFactory(role="expert")
    match_decide(annotation=first, verdict="same", individual=akili, decided_by=expert)
    with pytest.raises(ServiceError, match="revert that decision first"):
        annotation_split_off(annotation=second, split_by=expert)


def test_split_off_photo_is_offered_the_new_individual_its_sighting_just_got(
    django_capture_on_commit_callbacks,
) -> None:  # noqa: ANN001
    """Photo 2 shows another animal; photo 1 becomes the new "Sagu". Photo 2 is ranked again
    (the re-ranking runs after the decision commits) and now offers Sagu."""
    from wildweb.celery import app

    species = species_register(name="Chimpanzee")
    SpeciesModel.objects.filter(species=species).update(ranking_method="embedding")
    version = species_model_setting(species=species).model_version
    rng = np.random.default_rng(7)
    base = rng.normal(size=version.embedding_dim)

    def embedded(annotation: Annotation, noise: float) -> Annotation:
        vector = base + noise * rng.normal(size=base.shape)
        Embedding.objects.create(
            annotation=annotation, model_version=version, species=species,
            vector=(vector / np.linalg.norm(vector)).tolist(),
        )  # fmt: skip
        return annotation

    known = IndividualFactory(species=species, code="KNOWN")
    embedded(AnnotationFactory(image__encounter__species=species, individual=known), 3.0)
    sighting = EncounterFactory(species=species)
    first, second = (
        embedded(AnnotationFactory(image=ImageFactory(encounter=sighting)), 0.1) for _ in range(2)
    )
    from identification.services.matching import annotation_identify

    for photo in (first, second):
        annotation_identify(annotation_id=photo.pk)
    assert [c.individual.code for c in animal_review(annotation=second).candidates] == ["KNOWN"]
    expert = UserFactory(role="expert")
    second = annotation_split_off(annotation=second, split_by=expert)
    eager, app.conf.task_always_eager = app.conf.task_always_eager, True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            match_decide(
                annotation=first, verdict="new", decided_by=expert, new_code="SAGU", new_name="Sagu"
            )
    finally:
        app.conf.task_always_eager = eager
    ranked = [c.individual.code for c in animal_review(annotation=second).candidates]
    assert ranked[0] == "SAGU" and "KNOWN" in ranked


def test_volunteers_vote_on_the_sighting_once_whichever_photo_they_open(
    client, chimp_sighting, settings
) -> None:  # noqa: ANN001
    settings.VOTES_FOR_SUGGESTION = 1
    first, second, (akili, bobo, _) = chimp_sighting
    volunteer = UserFactory(role="volunteer")
    client.force_login(volunteer)
    client.post(
        reverse("review-act", args=[second.pk]), {"action": "vote-same", "individual": bobo.pk}
    )
    client.post(
        reverse("review-act", args=[first.pk]), {"action": "vote-same", "individual": bobo.pk}
    )
    assert list(Vote.objects.values_list("annotation_id", "individual_id")) == [(first.pk, bobo.pk)]
    Vote.objects.create(
        annotation=second, individual=bobo, voter=volunteer, same=False
    )  # older page
    client.force_login(UserFactory(role="expert"))
    page = client.get(reverse("review-annotation", args=[second.pk])).content.decode()
    assert "votes: 0 same / 1 different" in page  # one volunteer, counted once: the latest vote


def test_a_wrongly_split_photo_is_put_back_with_its_animal(client, chimp_sighting) -> None:  # noqa: ANN001
    first, second, (akili, _, _) = chimp_sighting
    expert = UserFactory(role="expert")
    second = annotation_split_off(annotation=second, split_by=expert)
    client.force_login(expert)
    page = client.get(reverse("review-annotation", args=[second.pk])).content.decode()
    assert "Same animal: review together" in page
    response = client.post(reverse("photo-join", args=[second.pk]), {"animal_of": "x"}, follow=True)
    assert "Say which animal" in response.content.decode()
    client.post(reverse("photo-join", args=[second.pk]), {"animal_of": first.pk})
    assert animal_review(annotation=first).photo_ids == [first.pk, second.pk]
    assert [i.annotation_id for i in review_queue()] == [first.pk]

    second = annotation_split_off(annotation=second, split_by=expert)
    match_decide(annotation=first, verdict="same", individual=akili, decided_by=expert)
    with pytest.raises(ServiceError, match="decide or revert first"):
        annotation_animal_join(annotation=second, animal_of=first, joined_by=expert)
