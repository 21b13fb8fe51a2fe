"""The upload page tells the truth about a long interactive backlog."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from identification.models import Identification
from identification.selectors.backlog import interactive_wait
from tests.factories import AnnotationFactory, UserFactory

pytestmark = pytest.mark.django_db


def _searches(count: int, state: str, queue: str = "identify") -> list[Identification]:
    return [
        Identification.objects.create(annotation=AnnotationFactory(), state=state, queue=queue)
        for _ in range(count)
    ]


def _finished_every(seconds: float, count: int) -> None:
    """``count`` searches finished ``seconds`` apart, the last one just now."""
    now = timezone.now()
    for index, search in enumerate(_searches(count, Identification.State.READY)):
        finished = now - timedelta(seconds=seconds * (count - 1 - index))
        Identification.objects.filter(pk=search.pk).update(updated_at=finished)


def test_the_wait_is_the_photos_ahead_at_the_measured_rate() -> None:
    _finished_every(seconds=2.0, count=11)  # 0.5 photos per second
    _searches(90, Identification.State.QUEUED)
    _searches(40, Identification.State.QUEUED, queue="bulk")  # imports are not ahead

    wait = interactive_wait()

    assert wait is not None and wait.photos_ahead == 90
    assert wait.seconds == pytest.approx(180.0)
    assert wait.minutes == 3


def test_a_short_wait_is_not_announced() -> None:
    _finished_every(seconds=0.5, count=11)
    _searches(30, Identification.State.QUEUED)  # 15 s at 2 photos per second
    assert interactive_wait() is None


def test_the_upload_page_says_how_long_candidates_will_take(client) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role="volunteer"))
    quiet = client.get(reverse("sighting-create")).content.decode()
    assert 'id="interactive-wait"' not in quiet

    _finished_every(seconds=3.0, count=21)
    _searches(45, Identification.State.RUNNING)
    page = client.get(reverse("sighting-create")).content.decode()

    assert 'id="interactive-wait"' in page
    assert "45 photos from other" in page and "about 3 minutes" in page
