"""Celery tasks of notifications (queue ``default``): thin service wrappers.

An unreachable mail server is transient: the task retries with growing pauses
(``EMAIL_RETRY_MAX_SECONDS`` between tries at most, ``EMAIL_MAX_RETRIES`` retries), and the last
reason stays on the notification. The tries are also counted on the notification, which the
service gives up after the last retry, so the job sweep's resends add no tries.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from notifications.services import MailServerUnavailable


@shared_task(
    acks_late=True,
    autoretry_for=(MailServerUnavailable,),
    retry_backoff=5,
    retry_backoff_max=settings.EMAIL_RETRY_MAX_SECONDS,
    max_retries=settings.EMAIL_MAX_RETRIES,
)
def notification_email_task(notification_id: int) -> None:
    from notifications.services import notification_email_send

    notification_email_send(notification_id=notification_id)
