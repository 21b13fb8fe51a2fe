"""Who may decide, concurrent experts, votes, merges, and reverting, with the audit trail."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse

from catalogue.models import Annotation, Individual
from identification.models import Identification, IdentityDecision, MatchCandidate, Vote
from identification.services.decisions import (
    decision_revert,
    individual_merge,
    match_decide,
    merge_revert,
    vote_cast,
)
from reid.ranking import method_score
from tests.factories import AnnotationFactory, IndividualFactory, UserFactory
from wildweb.errors import ConflictError, ServiceError


@pytest.fixture
def animal(db):  # noqa: ANN001, ANN201
    """An unidentified annotation with two ranked candidates."""
    annotation = AnnotationFactory()
    identification = Identification.objects.create(
        annotation=annotation, state=Identification.State.READY
    )
    candidates = [IndividualFactory(species=annotation.species) for _ in range(2)]
    for rank, individual in enumerate(candidates, start=1):
        MatchCandidate.objects.create(
            identification=identification,
            rank=rank,
            individual=individual,
            gallery_annotation=AnnotationFactory(
                image__encounter__species=annotation.species, individual=individual
            ),
            embedding_score=0.9 / rank,
            inlier_count=20 // rank,
            score=method_score("fused", 0.9 / rank, 20 // rank),
            fused_score=0.8 / rank,
        )
    return annotation, candidates


def test_volunteer_cannot_finalise_a_match(animal) -> None:  # noqa: ANN001
    annotation, (first, _) = animal
    with pytest.raises(ServiceError, match="Only experts"):
        match_decide(
            annotation=annotation,
            verdict="same",
            individual=first,
            decided_by=UserFactory(role="volunteer"),
        )
    annotation.refresh_from_db()
    assert annotation.individual is None and not IdentityDecision.objects.exists()


def test_volunteer_posting_a_decision_on_the_page_changes_nothing(client, animal) -> None:  # noqa: ANN001
    annotation, (first, _) = animal
    client.force_login(UserFactory(role="volunteer"))
    response = client.post(
        reverse("review-act", args=[annotation.pk]),
        {"action": "same", "individual": first.pk},
        follow=True,
    )
    assert "Only experts can confirm" in response.content.decode()
    annotation.refresh_from_db()
    assert annotation.individual is None


def test_expert_confirms_on_the_review_page_with_audit(client, animal) -> None:  # noqa: ANN001
    annotation, (first, _) = animal
    expert = UserFactory(role="expert")
    client.force_login(expert)
    page = client.get(reverse("review-annotation", args=[annotation.pk]))
    assert page.status_code == 200
    assert b'data-action="same"' in page.content and b"matches.jpg" in page.content
    client.post(
        reverse("review-act", args=[annotation.pk]),
        {"action": "same", "individual": first.pk, "expected_individual": ""},
    )
    annotation.refresh_from_db()
    assert annotation.individual == first
    assert annotation.identity_source == Annotation.IdentitySource.EXPERT
    decision = IdentityDecision.objects.get()
    assert (decision.decided_by, decision.individual_before, decision.individual_after) == (
        expert,
        None,
        first,
    )
    assert Identification.objects.get(annotation=annotation).state == Identification.State.DECIDED


@pytest.mark.parametrize(
    "url_name, args",
    [
        ("review-queue", []),
        ("review-annotation", ["annotation"]),
        ("individual-merge", []),
    ],
)
def test_anonymous_users_see_no_review_pages(client, animal, url_name, args) -> None:  # noqa: ANN001
    annotation, _ = animal
    response = client.get(
        reverse(url_name, args=[annotation.pk if a == "annotation" else a for a in args])
    )
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_anonymous_api_cannot_read_candidates_or_decide(client, animal) -> None:  # noqa: ANN001
    annotation, (first, _) = animal
    assert client.get(reverse("api-candidates", args=[annotation.pk])).status_code in (401, 403)
    response = client.post(
        reverse("api-decision", args=[annotation.pk]), {"verdict": "same", "individual": first.pk}
    )
    assert response.status_code in (401, 403)


def test_volunteer_may_not_merge(client, animal) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="volunteer"))
    assert client.get(reverse("individual-merge")).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_two_experts_deciding_at_once_one_wins_the_other_gets_a_conflict() -> None:
    annotation = AnnotationFactory()
    Identification.objects.create(annotation=annotation, state=Identification.State.READY)
    choices = [IndividualFactory(species=annotation.species) for _ in range(2)]
    experts = [UserFactory(role="expert") for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def decide(expert, individual) -> None:  # noqa: ANN001
        try:
            barrier.wait()
            match_decide(
                annotation=Annotation.objects.get(pk=annotation.pk),
                verdict="same",
                individual=individual,
                decided_by=expert,
                expected_individual_id=None,
            )
            outcomes.append("ok")
        except ConflictError as error:
            outcomes.append(error.message)
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=pair) for pair in zip(experts, choices)]
    [t.start() for t in threads]
    [t.join(timeout=30) for t in threads]
    assert sorted(outcomes)[-1] == "ok" and outcomes.count("ok") == 1
    assert any("Someone else decided this animal a moment ago" in o for o in outcomes)
    decision = IdentityDecision.objects.get()
    annotation.refresh_from_db()
    assert annotation.individual == decision.individual_after


def test_api_conflict_is_a_409_with_message(client, animal) -> None:  # noqa: ANN001
    annotation, (first, second) = animal
    match_decide(
        annotation=annotation,
        verdict="same",
        individual=first,
        decided_by=UserFactory(role="expert"),
    )
    client.force_login(UserFactory(role="expert"))
    response = client.post(
        reverse("api-decision", args=[annotation.pk]),
        {"verdict": "same", "individual": second.pk},
        content_type="application/json",
    )
    assert response.status_code == 409
    assert "Someone else decided" in response.json()["detail"]


def test_new_individual_then_revert_restores_and_keeps_audit(animal) -> None:  # noqa: ANN001
    annotation, _ = animal
    expert = UserFactory(role="expert")
    decision = match_decide(
        annotation=annotation, verdict="new", decided_by=expert, new_code="NEW-1", new_name="Newbie"
    )
    created = Individual.objects.get(code="NEW-1")
    assert decision.individual_after == created and created.name == "Newbie"
    decision_revert(decision=decision, reverted_by=UserFactory(role="expert"))
    annotation.refresh_from_db()
    decision.refresh_from_db()
    assert annotation.individual is None
    assert decision.reverted_at is not None and decision.reverted_by is not None
    with pytest.raises(ConflictError):
        decision_revert(decision=decision, reverted_by=expert)


def test_reject_records_a_decision_without_changing_identity(animal) -> None:  # noqa: ANN001
    annotation, (first, _) = animal
    decision = match_decide(
        annotation=annotation,
        verdict="reject",
        individual=first,
        decided_by=UserFactory(role="expert"),
    )
    annotation.refresh_from_db()
    assert annotation.individual is None and decision.candidate == first


def test_votes_are_counted_and_make_a_suggestion(client, animal, settings) -> None:  # noqa: ANN001
    settings.VOTES_FOR_SUGGESTION = 2
    annotation, (first, second) = animal
    for _ in range(2):
        vote_cast(
            annotation=annotation, individual=first, voter=UserFactory(role="volunteer"), same=True
        )
    voter = UserFactory(role="volunteer")
    vote_cast(annotation=annotation, individual=second, voter=voter, same=True)
    vote_cast(annotation=annotation, individual=second, voter=voter, same=False)  # changed mind
    assert Vote.objects.filter(individual=second).count() == 1
    annotation.refresh_from_db()
    assert annotation.individual is None  # votes never set the identity
    client.force_login(UserFactory(role="expert"))
    page = client.get(reverse("review-annotation", args=[annotation.pk])).content.decode()
    assert "votes: 2 same / 0 different" in page and "suggested by volunteers" in page
    assert "votes: 0 same / 1 different" in page


@pytest.mark.django_db
def test_merge_moves_annotations_and_revert_moves_them_back() -> None:
    expert = UserFactory(role="expert")
    kept, merged = IndividualFactory(), None
    merged = IndividualFactory(species=kept.species)
    moved = [
        AnnotationFactory(image__encounter__species=kept.species, individual=merged)
        for _ in range(2)
    ]
    record = individual_merge(kept=kept, merged=merged, merged_by=expert)
    assert set(kept.annotations.values_list("pk", flat=True)) == {a.pk for a in moved}
    merged.refresh_from_db()
    assert merged.merged_into == kept and not merged.is_public
    merge_revert(merge=record, reverted_by=expert)
    assert set(merged.annotations.values_list("pk", flat=True)) == {a.pk for a in moved}
    merged.refresh_from_db()
    assert merged.merged_into is None


@pytest.mark.django_db
def test_merge_across_species_is_refused() -> None:
    with pytest.raises(ServiceError, match="same species"):
        individual_merge(
            kept=IndividualFactory(),
            merged=IndividualFactory(),
            merged_by=UserFactory(role="expert"),
        )


def _error_messages(response) -> list[str]:  # noqa: ANN001
    return [str(m) for m in response.context["messages"] if m.level_tag == "error"]


def test_undo_with_nothing_to_undo_shows_why_on_the_review_page(client, animal) -> None:  # noqa: ANN001
    annotation, _ = animal
    client.force_login(UserFactory(role="expert"))
    response = client.post(
        reverse("review-act", args=[annotation.pk]), {"action": "undo"}, follow=True
    )
    assert response.redirect_chain == [(reverse("review-annotation", args=[annotation.pk]), 302)]
    assert _error_messages(response) == ["You have no decision on this animal to undo."]


def test_reverting_a_reverted_decision_shows_the_conflict(client, animal) -> None:  # noqa: ANN001
    annotation, (first, _) = animal
    expert = UserFactory(role="expert")
    decision = match_decide(
        annotation=annotation, verdict="reject", individual=first, decided_by=expert
    )
    decision_revert(decision=decision, reverted_by=expert)
    client.force_login(expert)
    response = client.post(reverse("decision-revert", args=[decision.pk]), follow=True)
    assert response.redirect_chain == [(reverse("review-annotation", args=[annotation.pk]), 302)]
    assert _error_messages(response) == ["This decision was already reverted."]


@pytest.mark.django_db
def test_refused_merge_shows_the_merge_page_again_with_why(client) -> None:  # noqa: ANN001
    kept, merged = IndividualFactory(), IndividualFactory()  # two species
    client.force_login(UserFactory(role="expert"))
    response = client.post(reverse("individual-merge"), {"kept": kept.pk, "merged": merged.pk})
    assert response.status_code == 200
    assert _error_messages(response) == ["Merge two different individuals of the same species."]
    merged.refresh_from_db()
    assert merged.merged_into is None


@pytest.mark.django_db
def test_reverting_a_merge_twice_shows_the_conflict(client) -> None:  # noqa: ANN001
    expert = UserFactory(role="expert")
    kept = IndividualFactory()
    record = individual_merge(
        kept=kept, merged=IndividualFactory(species=kept.species), merged_by=expert
    )
    client.force_login(expert)
    url = reverse("merge-revert", args=[record.pk])
    first = client.post(url, follow=True)
    assert [str(m) for m in first.context["messages"]] == ["The merge was reverted."]
    again = client.post(url, follow=True)
    assert again.redirect_chain == [(reverse("individual-merge"), 302)]
    assert _error_messages(again) == ["This merge was already reverted."]
