"""What a message on a fair queue does: the queue's next unit of work, searches first.

On a fair queue (``FAIR_QUEUES``) a message names no job of its own. If each message still did
its own kind of work, a new volunteer's search, sent when their photo was embedded, would wait
behind every message sent before it, embedding batches of other people's photos included:
under a flood that was most of a minute (BENCHMARKS.md, issue 22). So every message, an
embedding one or a search one, runs :func:`fair_turn_run`.
"""

from __future__ import annotations

from identification.selectors.fair import queue_is_fair
from identification.services.embedding import embedding_jobs_release_dead
from identification.services.embedding_run import embedding_jobs_run, job_queue
from identification.services.matching import identification_next_run


def fair_turn_run(*, queue: str) -> str | None:
    """Run one unit of a fair queue's work: the search whose turn it is when one is waiting,
    else the next embedding batch (both in round-robin order across uploaders).

    Searches first, because a waiting search finishes a sighting already under way: a new
    volunteer then waits for the unit running when they arrived, the searches waiting at
    that moment (at most a batch's worth), their photo's batch and their own search, not
    for the queue's backlog of messages. Every job sent one message, and a message runs a
    unit whenever one is waiting, so no job is left without one.

    Returns:
        ``"search"``, ``"embedding"``, or ``None`` when nothing was waiting.
    """
    if identification_next_run(queue=queue) is not None:
        return "search"
    if embedding_jobs_run(job_ids=[], queue=queue):
        return "embedding"
    return None


def embedding_message_run(*, job_ids: list[int]) -> None:
    """What an embedding message does: on a fair queue that queue's next unit
    (:func:`fair_turn_run`), elsewhere its own jobs (topped up to a batch)."""
    queue = job_queue(job_ids=job_ids)
    if not queue_is_fair(queue):
        embedding_jobs_run(job_ids=job_ids, queue=queue)
        return
    embedding_jobs_release_dead(job_ids=job_ids)  # a redelivered message whose worker died
    fair_turn_run(queue=queue)
