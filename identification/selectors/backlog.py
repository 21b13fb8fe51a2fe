"""How long a new upload waits for its candidates, from the interactive queue's measured rate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from identification.models import Identification

# The rate is read from the searches finished this recently; older ones say nothing of now.
RATE_WINDOW = timedelta(minutes=15)
RATE_SAMPLE = 50
# Below this the page says nothing: a short wait needs no warning.
WAIT_WORTH_SAYING_SECONDS = 60


@dataclass(frozen=True)
class InteractiveWait:
    """The photos ahead of a new upload and, when the rate is known, the expected wait."""

    photos_ahead: int
    seconds: float | None

    @property
    def minutes(self) -> int | None:
        return None if self.seconds is None else max(1, math.ceil(self.seconds / 60))


def interactive_wait() -> InteractiveWait | None:
    """The wait to tell someone about to upload, or ``None`` when it is short.

    Photos ahead: searches still pending on the ``identify`` queue. Rate: searches that
    finished there in the last ``RATE_WINDOW`` (the most recent ``RATE_SAMPLE``), as
    photos per second between the first and the last of them.
    """
    ahead = Identification.objects.filter(
        queue="identify", state__in=Identification.PENDING_STATES
    ).count()
    if ahead == 0:
        return None
    finished = list(
        Identification.objects.filter(
            queue="identify",
            state__in=(Identification.State.READY, Identification.State.FAILED),
            updated_at__gte=timezone.now() - RATE_WINDOW,
        )
        .order_by("-updated_at")
        .values_list("updated_at", flat=True)[:RATE_SAMPLE]
    )
    seconds = None
    if len(finished) >= 2:
        span = (finished[0] - finished[-1]).total_seconds()
        if span > 0:
            seconds = ahead * span / (len(finished) - 1)
    if seconds is not None and seconds < WAIT_WORTH_SAYING_SECONDS:
        return None
    if seconds is None and ahead < RATE_SAMPLE:
        return None  # no measured rate and a short queue: nothing worth a warning
    return InteractiveWait(photos_ahead=ahead, seconds=seconds)
