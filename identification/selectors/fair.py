"""The order the interactive worker takes waiting jobs in: round robin across uploaders.

On a FIFO queue a volunteer's first sighting waits behind every sighting sent before it, so
one person posting fifty photos delays everyone. On a fair queue a Celery message only says
"there is work"; the worker reads the job rows and takes the job whose turn it is.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.db.models import Max, QuerySet

UPLOADER = "annotation__image__encounter__submitted_by"


def queue_is_fair(queue: str | None) -> bool:
    """Whether a queue's messages are nudges served in fair order (``FAIR_QUEUES``: the
    interactive one; backlog queues stay first come, first served, and an import is one
    uploader anyway)."""
    return queue in settings.FAIR_QUEUES


def jobs_fair_order(*, waiting: QuerySet, queue: str) -> list[int]:
    """Ids of the ``waiting`` jobs in the order a fair queue's worker takes them.

    Round robin: every uploader's n-th waiting job comes before anyone's (n+1)-th. Among the
    n-th jobs, the uploader served longest ago goes first (served: the latest ``started_at``
    of any of their jobs of this kind on this queue, so whoever a worker is busy with right
    now comes last; never served comes first), then the older job. Sightings without an
    uploader count as one uploader never served.

    Args:
        waiting: ``EmbeddingJob`` or ``Identification`` rows of ``queue`` a worker could
            claim now (the interactive queue's: a few per active volunteer, so all are read).
        queue: The queue whose past jobs say who was served when.
    """
    rows = list(waiting.order_by("created_at", "pk").values_list("pk", UPLOADER))
    uploaders = {uploader for _, uploader in rows if uploader is not None}
    last_served: dict[int, datetime] = dict(
        waiting.model.objects.filter(
            **{f"{UPLOADER}__in": uploaders}, queue=queue, started_at__isnull=False
        )
        .order_by()
        .values(UPLOADER)
        .annotate(last=Max("started_at"))
        .values_list(UPLOADER, "last")
    )
    turns: dict[int | None, int] = defaultdict(int)
    keyed = []
    for arrival, (pk, uploader) in enumerate(rows):
        turns[uploader] += 1
        served = last_served.get(uploader)
        keyed.append(((turns[uploader], served is not None, served or datetime.min, arrival), pk))
    return [pk for _, pk in sorted(keyed, key=lambda item: item[0])]
