"""What volunteers and reviewers may see of sightings: their photos, and what became of them."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q

from catalogue.models import Annotation, Encounter, Image, Individual
from catalogue.roles import DECIDE_PERMISSION, VOTE_PERMISSION
from catalogue.selectors import (
    public_annotation_queryset,
    public_individual_queryset,
    sighting_list_for_user,
)
from identification.models import Identification, IdentityDecision, MatchCandidate
from identification.selectors.review import review_queue_photos


def image_visible_to(*, user: AbstractBaseUser | AnonymousUser, name: str) -> Image | None:
    """The stored photo or thumbnail named ``name``, if ``user`` may see it (see
    :func:`image_shown_to`). Any other file under ``MEDIA_ROOT`` (or a name no photo has) is
    never served.
    """
    if not name:
        return None
    image = Image.objects.select_related("encounter").filter(Q(file=name) | Q(thumbnail=name))
    image = image.first()
    if image is None or not image_shown_to(user=user, image=image):
        return None
    return image


def image_shown_to(*, user: AbstractBaseUser | AnonymousUser, image: Image) -> bool:
    """Whether some page may show ``user`` the photo ``image``: the one rule for every view
    that answers with a photo's pixels (the file, its thumbnail, a crop or a drawing of it).

    The same people see a photo as see the page it is on: anyone, a confirmed photo of a
    public individual (public pages; stored photos carry no EXIF, so no place leaks);
    experts and admins, every photo; the uploader, their own; volunteers who vote, the
    animals waiting in the review queue and the photos of the individuals they are offered.
    """
    if user.is_authenticated and (
        user.has_perm(DECIDE_PERMISSION) or image.encounter.submitted_by_id == user.pk
    ):
        return True
    if public_annotation_queryset().filter(image=image).exists():
        return True
    if user.is_authenticated and user.has_perm(VOTE_PERMISSION):
        queued = review_queue_photos()
        offered = MatchCandidate.objects.filter(identification__annotation__in=queued)
        return Annotation.objects.filter(
            Q(pk__in=queued.values("pk")) | Q(individual__in=offered.values("individual")),
            image=image,
        ).exists()
    return False


@dataclass(frozen=True)
class VolunteerSighting:
    encounter: Encounter
    status: str  # what a volunteer reads: Processing, Candidates ready, Identified as X, ...
    individuals: list[Individual]
    public_individuals: list[Individual]  # those of ``individuals`` with a public page


def volunteer_sightings(*, user: AbstractBaseUser) -> list[VolunteerSighting]:
    """The user's sightings, newest first, each with a status a volunteer understands."""
    encounters = list(
        sighting_list_for_user(user=user).prefetch_related("images__annotations__individual")
    )
    return sighting_statuses(encounters=encounters)


def sighting_statuses(*, encounters: list[Encounter]) -> list[VolunteerSighting]:
    """Each sighting with what a volunteer reads: Processing, Identified as X, New individual."""
    annotation_ids = [a.pk for e in encounters for i in e.images.all() for a in i.annotations.all()]
    # The standing decision per animal is its latest one not reverted.
    latest: dict[int, str] = {}
    for annotation_id, verdict in (
        IdentityDecision.objects.filter(annotation_id__in=annotation_ids, reverted_at__isnull=True)
        .exclude(verdict=IdentityDecision.Verdict.REJECT)
        .order_by("decided_at", "pk")
        .values_list("annotation_id", "verdict")
    ):
        latest[annotation_id] = verdict
    created_new = {pk for pk, verdict in latest.items() if verdict == IdentityDecision.Verdict.NEW}
    # Why the search failed, per animal (each photo fails on its own): one query for the page.
    failed_searches = dict(
        Identification.objects.filter(
            annotation_id__in=annotation_ids, state=Identification.State.FAILED
        ).values_list("annotation_id", "error")
    )
    public_ids = set(
        public_individual_queryset()
        .filter(annotations__pk__in=annotation_ids)
        .values_list("pk", flat=True)
    )
    result = []
    for encounter in encounters:
        annotations = [a for image in encounter.images.all() for a in image.annotations.all()]
        identified = [a for a in annotations if a.individual_id]
        individuals = list({a.individual_id: a.individual for a in identified}.values())
        if identified:
            parts = []
            for individual in individuals:
                is_new = any(
                    a.pk in created_new for a in identified if a.individual_id == individual.pk
                )
                parts.append(
                    f"New individual {individual}" if is_new else f"Identified as {individual}"
                )
            status = "; ".join(parts)
            if len(identified) < len(annotations):
                status += " (others still in review)"
        else:
            status = encounter.get_status_display()
        failed = [failed_searches[a.pk] for a in annotations if a.pk in failed_searches]
        if failed:
            status += f" ({len(failed)} photo(s) failed: {failed[0]})"
        result.append(
            VolunteerSighting(
                encounter=encounter,
                status=status,
                individuals=individuals,
                public_individuals=[i for i in individuals if i.pk in public_ids],
            )
        )
    return result
