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
from identification.services.calibration import calibration_request_if_decided
from notifications.services import notify_identity_confirmed
from wildweb.errors import ConflictError, ServiceError

Verdict = IdentityDecision.Verdict
ANY_IDENTITY = object()  # a rejection holds whoever the animal is now


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
    """Record an expert's verdict on an animal: it applies to every photo of it in its sighting.

    Args:
        annotation: Any photo of the animal.
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
            lead, photo_ids = _animal_photos_lock(annotation=annotation, expected=ANY_IDENTITY)
            return IdentityDecision.objects.create(
                annotation_id=photo_ids[0],
                annotation_ids=photo_ids,
                verdict=verdict,
                candidate=individual,
                individual_before_id=lead.individual_id,
                individual_after_id=lead.individual_id,
                decided_by=decided_by,
                **_ranking_record(photo_ids=photo_ids, individual=None),
            )
        _, photo_ids = _animal_photos_lock(annotation=annotation, expected=expected_individual_id)
        ranking = _ranking_record(photo_ids=photo_ids, individual=individual)
        if verdict == Verdict.NEW:
            individual = individual_create(
                species=annotation.species, code=new_code or _next_code(annotation), name=new_name
            )
        _identity_set(annotation_ids=photo_ids, expected=expected_individual_id, to=individual)
        decision = IdentityDecision.objects.create(
            annotation_id=photo_ids[0],
            annotation_ids=photo_ids,
            verdict=verdict,
            candidate=individual,
            individual_before_id=expected_individual_id,
            individual_after=individual,
            decided_by=decided_by,
            **ranking,
        )
        _sighting_others_identify(annotation=annotation, decided_ids=photo_ids)
        notify_identity_confirmed(
            encounter=decision.annotation.image.encounter,
            individual=individual,
            decided_by_id=decided_by.pk,
            is_new=verdict == Verdict.NEW,
        )
        # Every AUTO_CALIBRATE_DECISIONS new identities, the ranking method is chosen again.
        calibration_request_if_decided(species_id=annotation.species_id)
    return decision


def decision_revert(
    *, decision: IdentityDecision, reverted_by: AbstractBaseUser
) -> IdentityDecision:
    """Undo a decision: its photos go back to who they were before, if nobody changed them."""
    if not reverted_by.has_perm(DECIDE_PERMISSION):
        raise ServiceError("Only experts can revert decisions.")
    with transaction.atomic():
        decision = IdentityDecision.objects.select_for_update().get(pk=decision.pk)
        if decision.reverted_at:
            raise ConflictError("This decision was already reverted.")
        if decision.verdict != Verdict.REJECT:
            _identity_set(
                annotation_ids=decision.annotation_ids,
                expected=decision.individual_after_id,
                to=decision.individual_before,
            )
        decision.reverted_by, decision.reverted_at = reverted_by, timezone.now()
        decision.save(update_fields=["reverted_by", "reverted_at"])
    return decision


def annotation_split_off(*, annotation: Annotation, split_by: AbstractBaseUser) -> Annotation:
    """A photo that shows another animal than the rest of its sighting's: identify it alone.

    Raises:
        ServiceError: Not an expert, the photo is already alone, or it is identified already
            (revert that decision first, so that no photo changes identity unrecorded).
    """
    if not split_by.has_perm(DECIDE_PERMISSION):
        raise ServiceError("Only experts can split a photo off its sighting's animal.")
    with transaction.atomic():
        photo = (
            Annotation.objects.select_for_update(of=("self",))
            .select_related("individual")
            .get(pk=annotation.pk)
        )
        encounter_photos = Annotation.objects.select_for_update(of=("self",)).filter(
            image__encounter_id=annotation.image.encounter_id, species_id=photo.species_id
        )
        indexes = list(encounter_photos.values_list("animal_index", flat=True))
        if indexes.count(photo.animal_index) < 2:
            raise ServiceError("This photo is already identified on its own.")
        if photo.individual_id:
            raise ServiceError(
                f"This photo is identified as {photo.individual}; revert that decision first, "
                "then split the photo off."
            )
        photo.animal_index = max(indexes) + 1
        photo.save(update_fields=["animal_index"])
    return photo


def annotation_animal_join(
    *, annotation: Annotation, animal_of: Annotation, joined_by: AbstractBaseUser
) -> Annotation:
    """Put an animal's photos back with another animal of its sighting (a wrong split-off).

    Raises:
        ServiceError: Not an expert, photos of different sightings or species, or the two
            animals have different identities (decide or revert first).
    """
    if not joined_by.has_perm(DECIDE_PERMISSION):
        raise ServiceError("Only experts can regroup a sighting's photos.")
    with transaction.atomic():
        photo, target = (
            Annotation.objects.select_for_update(of=("self",))
            .select_related("image", "individual")
            .get(pk=pk)
            for pk in (annotation.pk, animal_of.pk)
        )
        if (photo.image.encounter_id, photo.species_id) != (
            target.image.encounter_id,
            target.species_id,
        ):
            raise ServiceError("Only photos of one sighting and species show one animal.")
        animal = Annotation.objects.filter(
            image__encounter_id=photo.image.encounter_id,
            species_id=photo.species_id,
            animal_index=photo.animal_index,
        )
        if animal.exclude(individual_id=target.individual_id).exists():
            raise ServiceError(
                f"This animal is {photo.individual or 'unidentified'} and the other is "
                f"{target.individual or 'unidentified'}; decide or revert first."
            )
        animal.update(animal_index=target.animal_index)
        photo.refresh_from_db(fields=["animal_index"])
    return photo


def vote_cast(
    *, annotation: Annotation, individual: Individual, voter: AbstractBaseUser, same: bool
) -> Vote:
    """A volunteer's vote on an animal (changing one's mind replaces the earlier vote).

    The review page stores it with the animal's first photo; the tally counts votes on any
    of the animal's photos (``selectors.review_candidates``).
    """
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


def _animal_photos_lock(
    *, annotation: Annotation, expected: int | None | object
) -> tuple[Annotation, list[int]]:
    """Lock the animal's photos; return its first photo and the ids a decision covers.

    The lock orders concurrent experts. The photo reviewed must still have the ``expected``
    identity (``None``: unidentified), else someone else decided first.
    """
    photo = (
        Annotation.objects.select_for_update(of=("self",))
        .select_related("individual")
        .get(pk=annotation.pk)
    )
    photos = list(
        Annotation.objects.select_for_update(of=("self",))
        .filter(
            image__encounter_id=annotation.image.encounter_id,
            species_id=photo.species_id,
            animal_index=photo.animal_index,
        )
        .order_by("pk")
    )
    if expected is not ANY_IDENTITY and photo.individual_id != expected:
        raise ConflictError(
            f"Someone else decided this animal a moment ago (it is now "
            f"{photo.individual or 'unidentified'}). Reload to see their decision."
        )
    # Photos already given another identity (before sightings were reviewed as one) keep it.
    covered = [p for p in photos if p.individual_id == photo.individual_id]
    return covered[0], [p.pk for p in covered]


def _ranking_record(*, photo_ids: list[int], individual: Individual | None) -> dict:
    """What the sighting's ranking offered at the moment of the decision (live accuracy)."""
    from identification.selectors.review import animal_review

    review = animal_review(annotation=Annotation.objects.get(pk=photo_ids[0]))
    ranks = {c.individual_id: c.rank for c in review.candidates}
    return {
        "model_version_id": review.model_version_id,
        "probably_new": review.probably_new if review.model_version_id else None,
        "confirmed_rank": ranks.get(individual.pk) if individual else None,
    }


def _identity_set(
    *, annotation_ids: list[int], expected: int | None, to: Individual | None
) -> None:
    """Compare-and-set of the identity of an animal's photos: all change, or none."""
    changed = Annotation.objects.filter(pk__in=annotation_ids, individual_id=expected).update(
        individual=to,
        identity_source=Annotation.IdentitySource.EXPERT
        if to
        else Annotation.IdentitySource.UNKNOWN,
    )
    if changed != len(annotation_ids):
        # Raised inside the caller's transaction, so the photos already changed roll back.
        raise ConflictError(
            "Someone else changed who this animal is a moment ago. Reload to see their decision."
        )
    Identification.objects.filter(annotation_id__in=annotation_ids).update(
        state=Identification.State.DECIDED if to else Identification.State.READY
    )
    encounter_ids = set(
        Annotation.objects.filter(pk__in=annotation_ids).values_list(
            "image__encounter_id", flat=True
        )
    )
    for encounter_id in encounter_ids:
        undecided = Annotation.objects.filter(
            image__encounter_id=encounter_id, individual__isnull=True
        )
        Encounter.objects.filter(pk=encounter_id).update(
            status=Encounter.Status.AWAITING_REVIEW
            if undecided.exists()
            else Encounter.Status.IDENTIFIED
        )


def _sighting_others_identify(*, annotation: Annotation, decided_ids: list[int]) -> None:
    """Rank the sighting's other animals again, so they are offered the one just decided.

    (Without this, a photo split off before its sighting's animal became the new individual
    "Sagu" would never be offered Sagu.)
    """
    from identification.services.embedding import annotations_identify_enqueue

    others = (
        Annotation.objects.filter(
            image__encounter_id=annotation.image.encounter_id,
            species_id=annotation.species_id,
            individual__isnull=True,
            identification__state=Identification.State.READY,
        )
        .exclude(pk__in=decided_ids)
        .values_list("pk", flat=True)
    )
    annotations_identify_enqueue(annotation_ids=list(others))


def _next_code(annotation: Annotation) -> str:
    count = Individual.objects.filter(species=annotation.species).count()
    prefix = annotation.species.slug[:4].upper()
    code = f"{prefix}-{count + 1:04d}"
    while Individual.objects.filter(species=annotation.species, code=code).exists():
        count += 1
        code = f"{prefix}-{count + 1:04d}"
    return code
