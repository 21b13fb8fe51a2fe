from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from catalogue.models import Annotation, Individual, Species
from catalogue.roles import DECIDE_PERMISSION, VOTE_PERMISSION
from identification.models import IdentityDecision, IndividualMerge, MatchCandidate
from identification.selectors import dashboard as dashboard_selectors
from identification.selectors import review as selectors
from identification.selectors.sightings import image_shown_to
from identification.services import decisions
from identification.services.pipeline import annotation_correct
from wildweb.errors import ServiceError


@login_required
@permission_required(VOTE_PERMISSION, raise_exception=True)
def review_queue(request: HttpRequest) -> HttpResponse:
    species_id = request.GET.get("species") or None
    species_pk = _id(species_id)
    context = {
        "queue": selectors.review_queue(species_id=species_pk)[:200],
        "pending": selectors.review_pending_count(species_id=species_pk),
        "species_list": Species.objects.all(),
        "species_id": species_id,
    }
    if request.headers.get("HX-Request"):
        return render(request, "identification/_review_queue_list.html", context)
    return render(request, "identification/review_queue.html", context)


def _animal_review(annotation_id: int) -> selectors.AnimalReview:
    annotation = get_object_or_404(
        Annotation.objects.select_related("image", "species"), pk=annotation_id
    )
    review = selectors.animal_review(annotation=annotation)
    if not review.identifications:
        raise Http404("This animal is not waiting for identification.")
    return review


@login_required
@permission_required(VOTE_PERMISSION, raise_exception=True)
def review_annotation(request: HttpRequest, annotation_id: int) -> HttpResponse:
    """One animal of a sighting: all its photos, one ranking of who it could be."""
    review = _animal_review(annotation_id)
    previous_id, next_id = selectors.review_neighbours(review=review)
    others = (
        Annotation.objects.filter(
            image__encounter_id=review.lead.image.encounter_id, species_id=review.lead.species_id
        )
        .exclude(animal_index=review.lead.animal_index)
        .select_related("image", "individual")
    )
    return render(
        request,
        "identification/review_annotation.html",
        {
            "review": review,
            "annotation": review.lead,
            "candidates": selectors.review_candidates(review=review, user=request.user),
            "decisions": selectors.decisions_covering(annotation_ids=review.photo_ids),
            "other_animals": others,
            "previous_id": previous_id,
            "next_id": next_id,
            "can_decide": request.user.has_perm(DECIDE_PERMISSION),
        },
    )


@login_required
@permission_required(VOTE_PERMISSION, raise_exception=True)
def review_individual_search(request: HttpRequest, annotation_id: int) -> HttpResponse:
    """The "which individual?" box: known individuals of the animal's species by code or name."""
    review = _animal_review(annotation_id)
    query = request.GET.get("q", "").strip()
    individuals = Individual.objects.none()
    if query:
        individuals = (
            Individual.objects.filter(species_id=review.lead.species_id, merged_into__isnull=True)
            .filter(Q(code__icontains=query) | Q(name__icontains=query))
            .order_by("code")[:20]
        )
    return render(
        request,
        "identification/_individual_search.html",
        {
            "review": review,
            "annotation": review.lead,
            "individuals": individuals,
            "query": query,
            "can_decide": request.user.has_perm(DECIDE_PERMISSION),
        },
    )


@login_required
@permission_required(VOTE_PERMISSION, raise_exception=True)
@require_POST
def review_act(request: HttpRequest, annotation_id: int) -> HttpResponse:
    """One action from the review page on the whole animal: a decision or a vote."""
    review = _animal_review(annotation_id)
    annotation = review.lead
    action = request.POST.get("action", "")
    individual = None
    if _id(request.POST.get("individual")) is not None:
        individual = Individual.objects.filter(pk=_id(request.POST["individual"])).first()
    expected = request.POST.get("expected_individual") or None
    with _service_errors_shown(request):
        if action in ("vote-same", "vote-different"):
            decisions.vote_cast(
                annotation=annotation,
                individual=_required(individual),
                voter=request.user,
                same=action == "vote-same",
            )
            messages.success(request, "Thank you, your vote is counted.")
        elif action == "undo":
            last = (
                selectors.decisions_covering(annotation_ids=review.photo_ids)
                .filter(decided_by=request.user, reverted_at__isnull=True)
                .first()
            )
            if last is None:
                raise ServiceError("You have no decision on this animal to undo.")
            decisions.decision_revert(decision=last, reverted_by=request.user)
            messages.success(request, "Your last decision was undone.")
        else:
            if expected and _id(expected) is None:
                raise ServiceError("The page was out of date; please reload it and decide again.")
            decision = decisions.match_decide(
                annotation=annotation,
                verdict=action,
                decided_by=request.user,
                individual=individual,
                expected_individual_id=_id(expected),
                new_code=request.POST.get("code", ""),
                new_name=request.POST.get("name", ""),
            )
            messages.success(request, _decision_message(decision))
            if action != IdentityDecision.Verdict.REJECT:
                _, next_id = selectors.review_neighbours(review=review)
                if next_id:
                    return redirect("review-annotation", annotation_id=next_id)
                return redirect("review-queue")
    return redirect("review-annotation", annotation_id=annotation.pk)


@login_required
@permission_required(DECIDE_PERMISSION, raise_exception=True)
@require_POST
def review_photo_split(request: HttpRequest, annotation_id: int) -> HttpResponse:
    """Split a photo showing another animal off its sighting's animal, to identify it alone."""
    photo = get_object_or_404(Annotation.objects.select_related("image"), pk=annotation_id)
    with _service_errors_shown(request):
        decisions.annotation_split_off(annotation=photo, split_by=request.user)
        messages.success(request, "The photo is split off; it is now identified on its own.")
    return redirect("review-annotation", annotation_id=photo.pk)


@login_required
@permission_required(DECIDE_PERMISSION, raise_exception=True)
@require_POST
def review_photo_join(request: HttpRequest, annotation_id: int) -> HttpResponse:
    """Put a split-off photo back with another animal of its sighting."""
    photo = get_object_or_404(Annotation, pk=annotation_id)
    other_id = request.POST.get("animal_of", "")
    with _service_errors_shown(request):
        other = Annotation.objects.filter(pk=_id(other_id)).first()
        if other is None:
            raise ServiceError("Say which animal of the sighting this photo belongs with.")
        decisions.annotation_animal_join(annotation=photo, animal_of=other, joined_by=request.user)
        messages.success(request, "The photo is back with that animal; they are reviewed together.")
    return redirect("review-annotation", annotation_id=photo.pk)


@login_required
@permission_required(DECIDE_PERMISSION, raise_exception=True)
@require_POST
def review_photo_edit(request: HttpRequest, annotation_id: int) -> HttpResponse:
    """Correct one photo's viewpoint or box from the review page."""
    photo = get_object_or_404(
        Annotation.objects.select_related("image", "species"), pk=annotation_id
    )
    box = [request.POST.get(name, "") for name in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")]
    with _service_errors_shown(request):
        annotation_correct(
            annotation=photo,
            changed_by=request.user,
            viewpoint=request.POST.get("viewpoint"),
            bbox=box if any(box) else None,
        )
        messages.success(request, "The photo was corrected; its candidates are being updated.")
    return redirect("review-annotation", annotation_id=photo.pk)


@login_required
@permission_required(DECIDE_PERMISSION, raise_exception=True)
@require_POST
def decision_revert(request: HttpRequest, decision_id: int) -> HttpResponse:
    decision = get_object_or_404(IdentityDecision, pk=decision_id)
    with _service_errors_shown(request):
        decisions.decision_revert(decision=decision, reverted_by=request.user)
        messages.success(request, "The decision was reverted.")
    return redirect("review-annotation", annotation_id=decision.annotation_id)


@login_required
@permission_required(DECIDE_PERMISSION, raise_exception=True)
def individual_merge(request: HttpRequest) -> HttpResponse:
    species_id = _id(request.GET.get("species") or request.POST.get("species"))
    individuals = Individual.objects.filter(merged_into__isnull=True).select_related("species")
    if species_id:
        individuals = individuals.filter(species_id=species_id)
    if request.method == "POST":
        with _service_errors_shown(request):
            kept = get_object_or_404(Individual, pk=_id(request.POST.get("kept")))
            merged = get_object_or_404(Individual, pk=_id(request.POST.get("merged")))
            decisions.individual_merge(kept=kept, merged=merged, merged_by=request.user)
            messages.success(request, f"{merged} was merged into {kept}.")
            return redirect(
                reverse("individual-merge") + (f"?species={species_id}" if species_id else "")
            )
    merges = IndividualMerge.objects.select_related("kept", "merged", "merged_by").order_by(
        "-merged_at"
    )[:20]
    return render(
        request,
        "identification/merge.html",
        {
            "individuals": individuals,
            "merges": merges,
            "species_list": Species.objects.all(),
            "species_id": species_id,
        },
    )


@login_required
@permission_required(DECIDE_PERMISSION, raise_exception=True)
@require_POST
def merge_revert(request: HttpRequest, merge_id: int) -> HttpResponse:
    with _service_errors_shown(request):
        decisions.merge_revert(
            merge=get_object_or_404(IndividualMerge, pk=merge_id), reverted_by=request.user
        )
        messages.success(request, "The merge was reverted.")
    return redirect("individual-merge")


@login_required
@permission_required(VOTE_PERMISSION, raise_exception=True)
def candidate_photos(request: HttpRequest, candidate_id: int) -> HttpResponse:
    """The candidate's other confirmed photos, loaded on demand by htmx."""
    candidate = get_object_or_404(
        MatchCandidate.objects.select_related("individual"), pk=candidate_id
    )
    annotations = candidate.individual.annotations.select_related("image")[:24]
    return render(
        request,
        "identification/_candidate_photos.html",
        {"candidate": candidate, "annotations": annotations},
    )


@login_required
@permission_required(VOTE_PERMISSION, raise_exception=True)
def correspondences_image(request: HttpRequest, candidate_id: int) -> HttpResponse:
    """The query and candidate photos side by side with their keypoint matches drawn."""
    import numpy as np

    from identification.services.crops import annotation_crop
    from reid.local_features import Match, draw_matches

    candidate = get_object_or_404(
        MatchCandidate.objects.select_related(
            "identification__annotation__image__encounter", "gallery_annotation__image__encounter"
        ),
        pk=candidate_id,
    )
    # The drawing shows both photos, so it follows the photos' own rule: voting alone does
    # not open the crops of any sighting whose candidate id one guesses.
    photos = (candidate.identification.annotation.image, candidate.gallery_annotation.image)
    if not all(image_shown_to(user=request.user, image=image) for image in photos):
        raise Http404("There is no picture here, or it is not yours to see.")
    pairs = np.asarray(candidate.match_pairs or [], dtype=np.float32).reshape(-1, 4)
    picture = draw_matches(
        annotation_crop(annotation=candidate.identification.annotation),
        annotation_crop(annotation=candidate.gallery_annotation),
        Match(inliers=len(pairs), pairs=pairs, tentative=len(pairs)),
    )
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=85)
    response = HttpResponse(buffer.getvalue(), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
@permission_required(DECIDE_PERMISSION, raise_exception=True)
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dashboard/dashboard.html",
        {
            "species_rows": dashboard_selectors.dashboard_species_rows(),
            "decisions": dashboard_selectors.dashboard_recent_decisions(),
            "disagreements": dashboard_selectors.dashboard_disagreements(),
            "live_accuracy": dashboard_selectors.live_accuracy(),
        },
    )


@contextmanager
def _service_errors_shown(request: HttpRequest) -> Iterator[None]:
    """Turn a refused action into an error message on the page the view goes on to show:
    the ``with`` block stops at the ServiceError and the view continues after it."""
    try:
        yield
    except ServiceError as error:
        messages.error(request, error.message)


def _id(text: str | None) -> int | None:
    """A database id sent in a form or query, or None: "abc" or "1.5" is no id, not a 500."""
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None


def _required(individual: Individual | None) -> Individual:
    if individual is None:
        raise ServiceError("Say which individual.")
    return individual


def _decision_message(decision: IdentityDecision) -> str:
    if decision.verdict == IdentityDecision.Verdict.REJECT:
        return f"Noted: not {decision.candidate}."
    if decision.verdict == IdentityDecision.Verdict.NEW:
        return f"Recorded as a new individual, {decision.individual_after}."
    return f"Confirmed as {decision.individual_after}."
