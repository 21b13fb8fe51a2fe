"""E-mails leave from a worker: a mail server that is down delays the mail, never the confirm.

They are jobs like any other: a broker that was down or lost the message delays the mail until
the job sweep sends it, a mail server that stays down gives it up, and nothing mails twice.
"""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import timedelta
from typing import Iterator

import pytest
from aiosmtpd.controller import Controller
from django.urls import reverse
from django.utils import timezone

from catalogue.models import Encounter
from conftest import CeleryWorker
from identification.models import Identification, IdentityDecision
from notifications.models import Notification, NotificationPreference
from notifications.services import (
    notification_email_send,
    notification_emails_recover,
    notify_candidates_ready,
)
from tests.factories import (
    AnnotationFactory,
    EncounterFactory,
    ImageFactory,
    IndividualFactory,
    UserFactory,
)
from tests.helpers import wait_until
from wildweb import jobs
from wildweb.tasks import jobs_sweep


class _Inbox:
    """aiosmtpd handler keeping every message it is given, answering ``delay`` seconds later."""

    def __init__(self, delay: float = 0.0) -> None:
        self.messages: list[str] = []
        self.delay = delay

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802
        self.messages.append(envelope.content.decode("utf8", errors="replace"))
        await asyncio.sleep(self.delay)  # the sender waits for this answer
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_port() -> int:
    return _free_port()


def _mail_worker_start(smtp_port: int, **env: str) -> CeleryWorker:
    """A ``default`` worker mailing through the test's SMTP port; ``env`` overrides."""
    return CeleryWorker(
        queues="default",
        env={
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp_port),
            "EMAIL_USE_TLS": "0",
            "EMAIL_TIMEOUT": "5",
            "EMAIL_RETRY_MAX_SECONDS": "2",
            "EMAIL_MAX_RETRIES": "100",
            **env,
        },
    )


@pytest.fixture
def mail_worker(transactional_db, smtp_port: int) -> Iterator[CeleryWorker]:  # noqa: ANN001
    from wildweb.celery import app

    app.control.purge()
    worker = _mail_worker_start(smtp_port)
    yield worker
    worker.stop()


@pytest.fixture
def mail_server(smtp_port: int) -> Iterator[_Inbox]:
    inbox = _Inbox()
    server = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    server.start()
    yield inbox
    server.stop()


def _candidates_ready_told(email: str = "vera@example.org") -> Notification:
    """A volunteer who wants the "candidates ready" e-mail is told, in autocommit: the e-mail
    is handed to the broker at once."""
    reporter = UserFactory(role="volunteer", email=email)
    NotificationPreference.objects.create(user=reporter, email_candidates_ready=True)
    encounter = EncounterFactory(submitted_by=reporter)
    notify_candidates_ready(encounter_id=encounter.pk, probably_new=False)
    return Notification.objects.get(user=reporter)


def _email_tasks_finished(worker: CeleryWorker) -> int:
    return sum(
        "notification_email_task[" in line and (" succeeded " in line or " retry" in line)
        for line in worker.log().splitlines()
    )


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


def test_email_made_while_the_broker_was_down_is_sent_once_by_the_sweep(
    transactional_db,  # noqa: ANN001
    own_redis,  # noqa: ANN001
    mail_server: _Inbox,
    smtp_port: int,
    settings,  # noqa: ANN001
) -> None:
    own_redis.stop()
    told = _candidates_ready_told()
    assert told.email_wanted and told.email_queued_at is None  # the broker refused it

    own_redis.start()
    jobs._broker_down_at = -jobs.BROKER_DOWN_PAUSE  # this process would skip it a few seconds
    Notification.objects.filter(pk=told.pk).update(
        created_at=timezone.now() - timedelta(minutes=1)  # past the on_commit grace
    )
    assert jobs_sweep()["notification_emails"] == 1
    worker = _mail_worker_start(smtp_port, REDIS_URL=own_redis.url)
    try:
        wait_until(lambda: Notification.objects.get(pk=told.pk).emailed_at, timeout=120)
        (message,) = mail_server.messages
        assert "vera@example.org" in message and f"sighting #{told.encounter_id}" in message

        settings.JOBS_RESEND_SECONDS = 0  # any e-mail handed over is due again by time
        assert jobs_sweep()["notification_emails"] == 0  # sent: nothing more to send
        time.sleep(2)
        assert len(mail_server.messages) == 1, worker.log()
    finally:
        worker.stop()


def test_email_given_up_after_the_last_retry_keeps_the_reason_and_is_not_swept_again(
    transactional_db,  # noqa: ANN001
    smtp_port: int,
    settings,  # noqa: ANN001
) -> None:
    from notifications.tasks import notification_email_task
    from wildweb.celery import app

    app.control.purge()
    worker = _mail_worker_start(smtp_port, EMAIL_MAX_RETRIES="2", EMAIL_RETRY_MAX_SECONDS="1")
    try:
        told = _candidates_ready_told()  # no server listens on smtp_port
        wait_until(lambda: Notification.objects.get(pk=told.pk).email_failed_at, timeout=120)
        told.refresh_from_db()
        assert told.emailed_at is None and told.email_tries == 3  # the first try and 2 retries
        assert "refused" in told.email_error.lower(), told.email_error

        inbox = _Inbox()
        server = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
        server.start()
        try:
            settings.JOBS_RESEND_SECONDS = 0
            assert jobs_sweep()["notification_emails"] == 0
            finished = _email_tasks_finished(worker)
            notification_email_task.delay(told.pk)  # a stray duplicate mails nothing either
            wait_until(lambda: _email_tasks_finished(worker) > finished, timeout=60)
            assert inbox.messages == []
        finally:
            server.stop()
        told.refresh_from_db()
        assert told.email_failed_at is not None and told.email_tries == 3
    finally:
        worker.stop()


def test_email_being_sent_is_not_sent_again_nor_waited_for(
    transactional_db,  # noqa: ANN001
    smtp_port: int,
    settings,  # noqa: ANN001
) -> None:
    from notifications.tasks import notification_email_task
    from wildweb.celery import app

    slow = 5.0
    inbox = _Inbox(delay=slow)  # the worker's delivery holds the notification this long
    server = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    server.start()
    app.control.purge()
    worker = _mail_worker_start(smtp_port, EMAIL_TIMEOUT="30")
    try:
        started = time.monotonic()
        told = _candidates_ready_told()
        assert time.monotonic() - started < slow / 2  # telling never waits for the mail server
        wait_until(lambda: inbox.messages, timeout=60, interval=0.1)  # the worker is sending

        # A second worker (this process) sending it at the same moment mails nothing...
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_port
        settings.EMAIL_USE_TLS, settings.EMAIL_TIMEOUT = False, 30
        notification_email_send(notification_id=told.pk)
        # ...and the sweep, for which it is due by time, leaves it to the worker at once.
        settings.JOBS_RESEND_SECONDS = 0
        started = time.monotonic()
        assert notification_emails_recover() == 0
        assert time.monotonic() - started < slow / 2
        assert Notification.objects.get(pk=told.pk).emailed_at is None  # still being sent

        wait_until(lambda: Notification.objects.get(pk=told.pk).emailed_at, timeout=60)
        assert jobs_sweep()["notification_emails"] == 0  # sent: the next sweep has nothing
        finished = _email_tasks_finished(worker)
        notification_email_task.delay(told.pk)  # a stray duplicate mails nothing either
        wait_until(lambda: _email_tasks_finished(worker) > finished, timeout=60)
        assert len(inbox.messages) == 1, worker.log()
        told.refresh_from_db()
        assert told.email_error == "" and told.email_tries == 0
    finally:
        worker.stop()
        server.stop()
