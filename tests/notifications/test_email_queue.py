"""E-mails leave from a worker: a mail server that is down delays the mail, never the confirm."""

from __future__ import annotations

import socket
import time
from typing import Iterator

import pytest
from aiosmtpd.controller import Controller
from django.urls import reverse

from catalogue.models import Encounter
from conftest import CeleryWorker
from identification.models import Identification, IdentityDecision
from notifications.models import Notification, NotificationPreference
from tests.factories import (
    AnnotationFactory,
    EncounterFactory,
    ImageFactory,
    IndividualFactory,
    UserFactory,
)


class _Inbox:
    """aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802
        self.messages.append(envelope.content.decode("utf8", errors="replace"))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_port() -> int:
    return _free_port()


@pytest.fixture
def mail_worker(transactional_db, smtp_port: int) -> Iterator[CeleryWorker]:  # noqa: ANN001
    from wildweb.celery import app

    app.control.purge()
    worker = CeleryWorker(
        queues="default",
        env={
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp_port),
            "EMAIL_USE_TLS": "0",
            "EMAIL_TIMEOUT": "5",
            "EMAIL_RETRY_MAX_SECONDS": "2",
            "EMAIL_MAX_RETRIES": "100",
        },
    )
    yield worker
    worker.stop()


def test_confirm_with_the_mail_server_down_is_answered_and_the_mail_goes_out_later(
    client,  # noqa: ANN001
    mail_worker: CeleryWorker,
    smtp_port: int,
) -> None:
    reporter = UserFactory(role="volunteer", email="vera@example.org")
    NotificationPreference.objects.create(user=reporter, email_identified=True)
    annotation = AnnotationFactory(
        image=ImageFactory(
            encounter=EncounterFactory(
                submitted_by=reporter, status=Encounter.Status.AWAITING_REVIEW
            )
        )
    )
    known = IndividualFactory(species=annotation.species, code="DOG-7")
    Identification.objects.create(annotation=annotation, state=Identification.State.READY)
    client.force_login(UserFactory(role="expert"))

    response = client.post(
        reverse("review-act", args=[annotation.pk]),
        {"action": "same", "individual": known.pk, "expected_individual": ""},
    )

    assert response.status_code == 302
    assert IdentityDecision.objects.filter(individual_after=known).exists()
    told = Notification.objects.get(user=reporter)  # in the app at once
    assert told.kind == Notification.Kind.IDENTIFIED and told.emailed_at is None
    deadline = time.monotonic() + 120
    while not Notification.objects.get(pk=told.pk).email_error:
        assert time.monotonic() < deadline, mail_worker.log()
        time.sleep(0.5)  # the worker tried, found no server, and said why

    inbox = _Inbox()
    server = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    server.start()
    try:
        while not inbox.messages:
            assert time.monotonic() < deadline + 120, mail_worker.log()
            time.sleep(0.5)
    finally:
        server.stop()
    (message,) = inbox.messages
    assert "vera@example.org" in message and "identified as DOG-7" in message
    told.refresh_from_db()
    assert told.emailed_at is not None and told.email_error == ""
