"""Deciding who an animal is: expert decisions, volunteer votes, merges, and reverting them.

Only an expert's decision sets an identity. Every decision and merge is stored with who,
when, before and after, and can be reverted by an expert.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from catalogue.models import Annotation, Encounter, Individual
from catalogue.roles import DECIDE_PERMISSION, VOTE_PERMISSION
from catalogue.services.species import individual_create
from identification.models import Identification, IdentityDecision, IndividualMerge, Vote
from wildweb.errors import ConflictError, ServiceError

Verdict = IdentityDecision.Verdict


def match_decide(
    *,
    annotation: Annotation,
    verdict: str,
    decided_by: AbstractBaseUser,
    individual: Individual | None = None,
    expected_individual_id: int | None = None,
    new_code: str = "",
    new_name: str = "",
) -> IdentityDecision:
    """Record an expert's verdict on an animal.

    Args:
        annotation: The animal.
        verdict: ``same`` (it is ``individual``), ``reject`` (it is not ``individual``) or
            ``new`` (a new individual, created with ``new_code`` and ``new_name``).
        decided_by: The expert.
        individual: The candidate accepted or rejected.
        expected_individual_id: The identity the expert saw when deciding; if someone else
            changed it meanwhile, nothing is written and ConflictError says so.

    Raises:
        ServiceError: Not an expert, or the request does not make sense.
        ConflictError: Someone else decided this animal first.
    """
    if not decided_by.has_perm(DECIDE_PERMISSION):
        raise ServiceError("Only experts can confirm who an animal is; volunteers can vote.")
    if verdict not in Verdict.values:
        raise ServiceError(f"Unknown verdict {verdict!r}.")
    if verdict in (Verdict.SAME, Verdict.REJECT) and individual is None:
        raise ServiceError("Say which individual.")
    if individual is not None and individual.species_id != annotation.species_id:
        raise ServiceError(f"{individual} is a {individual.species}, not a {annotation.species}.")
    with transaction.atomic():
        if verdict == Verdict.REJECT:
            current = Annotation.objects.select_for_update().get(pk=annotation.pk)
            return IdentityDecision.objects.create(
                annotation=annotation,
                verdict=verdict,
                candidate=individual,
                individual_before_id=current.individual_id,
                individual_after_id=current.individual_id,
                decided_by=decided_by,
            )
        if verdict == Verdict.NEW:
            individual = individual_create(
                species=annotation.species, code=new_code or _next_code(annotation), name=new_name
            )
        _identity_set(annotation=annotation, expected=expected_individual_id, to=individual)
        decision = IdentityDecision.objects.create(
            annotation=annotation,
            verdict=verdict,
            candidate=individual,
            individual_before_id=expected_individual_id,
            individual_after=individual,
            decided_by=decided_by,
        )
    return decision


def decision_revert(
    *, decision: IdentityDecision, reverted_by: AbstractBaseUser
) -> IdentityDecision:
    """Undo a decision: the animal goes back to who it was before, if nobody changed it since."""
    if not reverted_by.has_perm(DECIDE_PERMISSION):
        raise ServiceError("Only experts can revert decisions.")
    with transaction.atomic():
        decision = IdentityDecision.objects.select_for_update().get(pk=decision.pk)
        if decision.reverted_at:
            raise ConflictError("This decision was already reverted.")
        if decision.verdict != Verdict.REJECT:
            _identity_set(
                annotation=decision.annotation,
                expected=decision.individual_after_id,
                to=decision.individual_before,
            )
        decision.reverted_by, decision.reverted_at = reverted_by, timezone.now()
        decision.save(update_fields=["reverted_by", "reverted_at"])
    return decision


def vote_cast(
    *, annotation: Annotation, individual: Individual, voter: AbstractBaseUser, same: bool
) -> Vote:
    """A volunteer's vote (changing one's mind replaces the earlier vote)."""
    if not voter.has_perm(VOTE_PERMISSION):
        raise ServiceError("Sign in as a volunteer to vote.")
    if individual.species_id != annotation.species_id:
        raise ServiceError("That individual is of another species.")
    vote, _ = Vote.objects.update_or_create(
        annotation=annotation, individual=individual, voter=voter, defaults={"same": same}
    )
    return vote


def individual_merge(
    *, kept: Individual, merged: Individual, merged_by: AbstractBaseUser
) -> IndividualMerge:
    """Fold ``merged`` into ``kept``: its annotations move over; the record remembers which."""
    if not merged_by.has_perm(DECIDE_PERMISSION):
        raise ServiceError("Only experts can merge individuals.")
    if kept.pk == merged.pk or kept.species_id != merged.species_id:
        raise ServiceError("Merge two different individuals of the same species.")
    with transaction.atomic():
        locked = {
            i.pk: i
            for i in Individual.objects.select_for_update().filter(pk__in=[kept.pk, merged.pk])
        }
        if locked[merged.pk].merged_into_id or locked[kept.pk].merged_into_id:
            raise ConflictError("One of these individuals was already merged.")
        moved = list(Annotation.objects.filter(individual=merged).values_list("pk", flat=True))
        Annotation.objects.filter(pk__in=moved).update(individual=kept)
        Individual.objects.filter(pk=merged.pk).update(merged_into=kept, is_public=False)
        return IndividualMerge.objects.create(
            kept=kept,
            merged=merged,
            moved_annotation_ids=moved,
            merged_by=merged_by,
            merged_was_public=locked[merged.pk].is_public,
        )


def merge_revert(*, merge: IndividualMerge, reverted_by: AbstractBaseUser) -> IndividualMerge:
    if not reverted_by.has_perm(DECIDE_PERMISSION):
        raise ServiceError("Only experts can revert merges.")
    with transaction.atomic():
        merge = IndividualMerge.objects.select_for_update().get(pk=merge.pk)
        if merge.reverted_at:
            raise ConflictError("This merge was already reverted.")
        Annotation.objects.filter(pk__in=merge.moved_annotation_ids, individual=merge.kept).update(
            individual=merge.merged
        )
        Individual.objects.filter(pk=merge.merged_id).update(
            merged_into=None, is_public=merge.merged_was_public
        )
        merge.reverted_by, merge.reverted_at = reverted_by, timezone.now()
        merge.save(update_fields=["reverted_by", "reverted_at"])
    return merge


def _identity_set(*, annotation: Annotation, expected: int | None, to: Individual | None) -> None:
    """Compare-and-set of an annotation's identity; the row lock orders concurrent experts."""
    changed = Annotation.objects.filter(pk=annotation.pk, individual_id=expected).update(
        individual=to,
        identity_source=Annotation.IdentitySource.EXPERT
        if to
        else Annotation.IdentitySource.UNKNOWN,
    )
    if changed != 1:
        current = Annotation.objects.select_related("individual").get(pk=annotation.pk)
        raise ConflictError(
            f"Someone else decided this animal a moment ago (it is now "
            f"{current.individual or 'unidentified'}). Reload to see their decision."
        )
    annotation.refresh_from_db(fields=["individual", "identity_source"])
    Identification.objects.filter(annotation=annotation).update(
        state=Identification.State.DECIDED if to else Identification.State.READY
    )
    encounter_id = annotation.image.encounter_id
    undecided = Annotation.objects.filter(image__encounter_id=encounter_id, individual__isnull=True)
    Encounter.objects.filter(pk=encounter_id).update(
        status=Encounter.Status.AWAITING_REVIEW
        if undecided.exists()
        else Encounter.Status.IDENTIFIED
    )


def _next_code(annotation: Annotation) -> str:
    count = Individual.objects.filter(species=annotation.species).count()
    prefix = annotation.species.slug[:4].upper()
    code = f"{prefix}-{count + 1:04d}"
    while Individual.objects.filter(species=annotation.species, code=code).exists():
        count += 1
        code = f"{prefix}-{count + 1:04d}"
    return code
