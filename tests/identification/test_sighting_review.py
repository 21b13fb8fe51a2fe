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
    MatchCandidate,
    SpeciesModel,
    Vote,
)
from identification.selectors.review import animal_review, photo_candidates_combine, review_queue
from identification.services.decisions import (
    annotation_animal_join,
    annotation_split_off,
    decision_revert,
    match_decide,
)
from identification.services.models import species_model_setting
from identification.services.pipeline import species_register
from tests.factories import (
    AnnotationFactory,
    EncounterFactory,
    ImageFactory,
    IndividualFactory,
    UserFactory,
    ranked_photo,
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


def test_one_photo_ranks_as_the_species_method_ranks_it() -> None:
    """Combining never reorders a single photo: the evidence follows the species' method."""
    rows = [
        MatchCandidate(
            identification_id=1, rank=r, individual_id=i, embedding_score=cos,
            inlier_count=inl, fused_score=fused,
        )
        for r, (i, cos, inl, fused) in enumerate(
            [(1, 0.9, 5, 0.3), (2, 0.8, 40, 0.6), (3, 0.7, 20, 0.9)], start=1
        )
    ]  # fmt: skip
    order = {
        method: [c.individual_id for c in photo_candidates_combine(candidates=rows, method=method)]
        for method in ("embedding", "local", "fused")
    }
    assert order == {"embedding": [1, 2, 3], "local": [2, 3, 1], "fused": [3, 2, 1]}


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
