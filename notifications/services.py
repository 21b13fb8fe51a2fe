"""Telling volunteers what became of their sightings, in the app and by e-mail.

The identification side calls :func:`notify_candidates_ready` when a sighting's candidates
are stored and :func:`notify_identity_confirmed` where an expert's decision is applied, passing
plain values: this app builds on the catalogue only, never on identification. Both write the
notifications in the caller's transaction and queue their e-mails once it commits, so a
decision that rolls back tells nobody. E-mails are sent by a worker
(``notifications.tasks.notification_email_task``), never by the web process, so a slow or
absent mail server delays only the mail; the job sweep sends again an e-mail whose message
never reached the broker or was lost in it (:func:`notification_emails_recover`).
"""

from __future__ import annotations

import logging
import smtplib
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from catalogue.models import Encounter, Individual
from catalogue.selectors import confirmed_identity_queryset, public_individual_get
from notifications.models import Notification, NotificationPreference
from notifications.selectors import notification_preference_get
from wildweb.errors import full_clean

logger = logging.getLogger(__name__)
Kind = Notification.Kind
# An e-mail made this recently may still be on its way to the broker (on_commit is running).
SEND_GRACE = timedelta(seconds=10)


def notify_candidates_ready(*, encounter_id: int, probably_new: bool) -> None:
    """The model has ranked candidates for a sighting: tell the person who reported it.

    Args:
        encounter_id: The sighting.
        probably_new: Whether the model flagged an animal of it as probably not seen before.
    """
    encounter = Encounter.objects.select_related("species").filter(pk=encounter_id).first()
    if encounter is None or encounter.submitted_by_id is None:
        return
    _notify(
        user_id=encounter.submitted_by_id,
        kind=Kind.CANDIDATES_READY,
        encounter=encounter,
        message=(
            f"Our model thinks the {encounter.species} in your sighting #{encounter.pk} may be "
            "an individual not seen before; an expert will check."
            if probably_new
            else f"Our model suggested who the {encounter.species} in your sighting "
            f"#{encounter.pk} may be; an expert will confirm it."
        ),
        link=reverse("sighting-detail", args=[encounter.pk]),
    )


def notify_identity_confirmed(
    *, encounter: Encounter, individual: Individual, decided_by_id: int, is_new: bool
) -> None:
    """An expert confirmed who the animal in ``encounter`` is.

    The sighting's reporter hears that it was identified or is a new individual; everyone
    else who reported a confirmed sighting of that individual hears it was seen again. Only
    the date is told, never the place or who saw it.

    Args:
        encounter: The sighting the decision was about.
        individual: Who the animal is now.
        decided_by_id: The expert, who is told nothing.
        is_new: The expert created ``individual`` for this animal.
    """
    public = public_individual_get(individual_id=individual.pk)
    told = {decided_by_id}
    if encounter.submitted_by_id and encounter.submitted_by_id not in told:
        _notify(
            user_id=encounter.submitted_by_id,
            kind=Kind.NEW_INDIVIDUAL if is_new else Kind.IDENTIFIED,
            encounter=encounter,
            individual=individual,
            message=(
                f"Your sighting #{encounter.pk} is a new {encounter.species}: {individual}."
                if is_new
                else f"Your sighting #{encounter.pk} was identified as {individual}."
            ),
            link=reverse("sighting-detail", args=[encounter.pk]),
        )
        told.add(encounter.submitted_by_id)
    if is_new:
        return
    seen = encounter.observed_at
    when = f" on {seen.day} {seen:%b %Y}" if seen else ""
    reporters = (
        get_user_model()
        .objects.filter(
            encounters__images__annotations__in=confirmed_identity_queryset().filter(
                individual=individual
            )
        )
        .exclude(pk__in=[pk for pk in told if pk])
        .distinct()
    )
    for reporter in reporters:
        link = reverse("individual-detail", args=[individual.pk]) if public else ""
        if not link:  # a private individual: point at the reporter's own sighting of it
            own = (
                Encounter.objects.filter(
                    submitted_by=reporter, images__annotations__individual=individual
                )
                .order_by("-created_at")
                .first()
            )
            link = reverse("sighting-detail", args=[own.pk]) if own else ""
        _notify(
            user_id=reporter.pk,
            kind=Kind.SEEN_AGAIN,
            encounter=encounter,
            individual=individual,
            message=f"{individual} ({encounter.species}), which you reported, was seen again"
            f"{when}.",
            link=link,
        )


def notify_import_finished(
    *, user_id: int, import_id: int, species_name: str, result: dict, error: str = ""
) -> None:
    """An import ended (done with ``result``'s counts, or failed with ``error``): tell the
    admin who started it."""
    if error:
        message = f"Your import into {species_name} failed: {error}"
    else:
        message = (
            f"Your import into {species_name} is done: {result.get('annotations_created', 0)} "
            f"animals, {result.get('individuals_created', 0)} new individuals, "
            f"{result.get('duplicates_skipped', 0)} duplicate photos skipped."
        )
    _notify(
        user_id=user_id,
        kind=Kind.IMPORT_FINISHED,
        message=message,
        link=reverse("training-import-detail", args=[import_id]),
    )


@transaction.atomic
def notification_preference_update(
    *,
    user: AbstractBaseUser,
    email: str,
    email_candidates_ready: bool,
    email_identified: bool,
    email_seen_again: bool,
) -> NotificationPreference:
    """Save which e-mails a person wants and the address they go to: both or neither."""
    preference = notification_preference_get(user=user)
    preference.email_candidates_ready = email_candidates_ready
    preference.email_identified = email_identified
    preference.email_seen_again = email_seen_again
    full_clean(preference)
    preference.save()
    user.email = email
    full_clean(user)
    user.save(update_fields=["email"])
    return preference


def notifications_mark_read(*, user: AbstractBaseUser) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).update(
        read_at=timezone.now()
    )


class MailServerUnavailable(Exception):
    """The mail server could not take an e-mail now; the task sending it tries again later."""


def notification_email_send(*, notification_id: int) -> None:
    """E-mail one notification if its person still wants that and has an address.

    The notification's row stays locked while the mail server is talked to (``EMAIL_TIMEOUT``
    bounds that), so a duplicate task, e.g. one the sweep sent again, skips it instead of
    mailing twice. A refused address, or a mail server still unreachable after
    ``EMAIL_MAX_RETRIES`` retries, gives the e-mail up with the reason.

    Raises:
        MailServerUnavailable: the server could not be reached or dropped the connection; the
            reason is recorded on the notification and the task retries.
    """
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("user")
            .filter(pk=notification_id, emailed_at__isnull=True, email_failed_at__isnull=True)
            .first()
        )
        if notification is None:
            return  # sent, given up, or being sent by another worker right now
        if not _email_wanted(user=notification.user, kind=notification.kind):
            Notification.objects.filter(pk=notification.pk).update(email_wanted=False)
            return  # the wish or the address was withdrawn since
        try:
            _email_deliver(notification=notification)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as error:
            # The server answered and refused this address: trying again would not help.
            _email_failure_record(notification=notification, error=error, give_up=True)
            return
        except OSError as error:  # smtplib's errors are OSErrors too: refused, timed out, dropped
            give_up = notification.email_tries >= settings.EMAIL_MAX_RETRIES
            _email_failure_record(notification=notification, error=error, give_up=give_up)
            if give_up:
                return
            unavailable = error
        else:
            Notification.objects.filter(pk=notification.pk).update(
                emailed_at=timezone.now(), email_error=""
            )
            return
    # Raised once the failure is committed: the task's retry must not roll the reason back.
    raise MailServerUnavailable(str(unavailable)) from unavailable


def notification_emails_recover() -> int:
    """The sweep's part for e-mails: send again those wanted, neither sent nor given up.

    Those never handed to the broker (it was down) and those handed over longer than
    ``JOBS_RESEND_SECONDS`` ago (a message lost inside Redis, a worker killed between tries).

    Returns:
        How many were sent.
    """
    now = timezone.now()
    pending = Notification.objects.filter(
        email_wanted=True, emailed_at__isnull=True, email_failed_at__isnull=True
    ).filter(
        Q(email_queued_at__isnull=True, created_at__lt=now - SEND_GRACE)
        | Q(email_queued_at__lt=now - timedelta(seconds=settings.JOBS_RESEND_SECONDS))
    )
    return _email_queue(
        notification_ids=list(pending.order_by("created_at").values_list("pk", flat=True)[:500])
    )


def _email_deliver(*, notification: Notification) -> None:
    link = f"{settings.SITE_URL.rstrip('/')}{notification.link}" if notification.link else ""
    preferences = f"{settings.SITE_URL.rstrip('/')}{reverse('notification-preferences')}"
    body = (
        f"{notification.message}\n\n"
        + (f"See it here: {link}\n\n" if link else "")
        + f"You get this e-mail because of your Wildweb settings: {preferences}\n"
    )
    send_mail(
        subject=f"Wildweb: {notification.get_kind_display().lower()}",
        message=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[notification.user.email],
    )


def _email_failure_record(*, notification: Notification, error: Exception, give_up: bool) -> None:
    logger.warning(
        "E-mail of notification %s failed%s: %s",
        notification.pk,
        "; given up" if give_up else "",
        error,
    )
    now = timezone.now()
    message = str(error) or type(error).__name__
    Notification.objects.filter(pk=notification.pk).update(
        email_error=message[:300],
        email_tries=F("email_tries") + 1,
        # A retry is handed to the broker now: the sweep leaves it to the task meanwhile.
        **({"email_failed_at": now} if give_up else {"email_queued_at": now}),
    )


def _notify(
    *,
    user_id: int,
    kind: str,
    message: str,
    link: str,
    encounter: Encounter | None = None,
    individual: Individual | None = None,
) -> Notification | None:
    user = get_user_model().objects.filter(pk=user_id).only("email").first()
    try:
        with transaction.atomic():  # a savepoint: a repeat must not break the caller's work
            notification = Notification.objects.create(
                user_id=user_id,
                kind=kind,
                message=message[:300],
                link=link,
                encounter=encounter,
                individual=individual,
                email_wanted=user is not None and _email_wanted(user=user, kind=kind),
            )
    except IntegrityError:
        return None  # told already (matching ran again, or a decision was redone)
    if notification.email_wanted:
        transaction.on_commit(lambda: _email_queue(notification_ids=[notification.pk]))
    return notification


def _email_queue(*, notification_ids: list[int]) -> int:
    """Hand e-mails to the broker, stamping each one handed over; with the broker down the
    rest stay unstamped for the sweep. One a worker is sending right now is left alone.

    Returns:
        How many were handed over.
    """
    from notifications.tasks import notification_email_task
    from wildweb.jobs import task_send

    with transaction.atomic():
        # Stamped before the send: once sent, a worker may hold the row for as long as the mail
        # server takes, and the web process must not wait for that.
        ids = list(
            Notification.objects.filter(pk__in=notification_ids)
            .select_for_update(skip_locked=True)
            .order_by("created_at", "pk")
            .values_list("pk", flat=True)
        )
        Notification.objects.filter(pk__in=ids).update(email_queued_at=timezone.now())
    for position, notification_id in enumerate(ids):
        if not task_send(notification_email_task, notification_id):
            # The broker is down; the rest would fail the same way.
            Notification.objects.filter(pk__in=ids[position:]).update(email_queued_at=None)
            return position
    return len(ids)


def _email_wanted(*, user: AbstractBaseUser, kind: str) -> bool:
    """The one rule for whether a notification becomes an e-mail: an address and the wish."""
    return bool(user.email) and notification_preference_get(user=user).wants_email(kind)
