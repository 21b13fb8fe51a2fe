"""Where a sighting stands: failing one animal's search loudly, and the encounter's status."""

from __future__ import annotations

import logging

from catalogue.models import Encounter
from identification.models import Identification
from notifications.services import notify_candidates_ready

logger = logging.getLogger(__name__)


def identifications_fail(*, annotation_ids: list[int], reason: str) -> None:
    """Record why the search for these animals failed; their sightings stop "Processing"."""
    Identification.objects.filter(
        annotation_id__in=annotation_ids, state__in=Identification.PENDING_STATES
    ).update(state=Identification.State.FAILED, error=reason[:1000], worker="")
    for encounter_id in set(
        Encounter.objects.filter(images__annotations__pk__in=annotation_ids).values_list(
            "pk", flat=True
        )
    ):
        encounter_status_refresh(encounter_id=encounter_id)


def encounter_status_refresh(*, encounter_id: int) -> str:
    """Move a sighting out of "Processing" once no photo of it is still being searched.

    "Candidates ready" needs every photo finished and at least one with candidates; a sighting
    whose every search failed becomes "Processing failed" (each photo keeps its reason).

    Returns:
        The encounter's status afterwards.
    """
    states = set(
        Identification.objects.filter(annotation__image__encounter_id=encounter_id).values_list(
            "state", flat=True
        )
    )
    processing = Encounter.objects.filter(pk=encounter_id, status=Encounter.Status.PROCESSING)
    if states & set(Identification.PENDING_STATES):
        pass
    elif states - {Identification.State.FAILED}:
        if processing.update(status=Encounter.Status.AWAITING_REVIEW):
            probably_new = Identification.objects.filter(
                annotation__image__encounter_id=encounter_id, probably_new=True
            ).exists()
            notify_candidates_ready(encounter_id=encounter_id, probably_new=probably_new)
    elif states:
        processing.update(status=Encounter.Status.FAILED)
    return Encounter.objects.filter(pk=encounter_id).values_list("status", flat=True).first()
