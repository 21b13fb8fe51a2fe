"""Volunteers are told, in the app and by e-mail, what became of their sightings."""

from __future__ import annotations

import re
from typing import Iterator

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from catalogue.models import Encounter
from identification.models import IdentityDecision
from identification.services.decisions import match_decide
from identification.services.matching import annotation_identify
from identification.services.models import zero_shot_version
from identification.services.pipeline import species_register
from notifications.models import Notification, NotificationPreference
from tests.factories import (
    AnnotationFactory,
    EncounterFactory,
    ImageFactory,
    IndividualFactory,
    UserFactory,
    confirmed_sighting,
    random_embeddings,
)

pytestmark = pytest.mark.django_db
Kind = Notification.Kind


@pytest.fixture(autouse=True)
def _tasks_run_in_this_process() -> Iterator[None]:
    """The e-mail task runs where it is sent, so these tests read ``mail.outbox``; a real
    worker and a real SMTP server send it in ``test_email_queue.py``."""
    from wildweb.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def _reported_animal(user, species=None):  # noqa: ANN001, ANN202
    encounter = EncounterFactory(
        submitted_by=user,
        status=Encounter.Status.AWAITING_REVIEW,
        latitude=1.23456,
        **({"species": species} if species else {}),
    )
    return AnnotationFactory(image=ImageFactory(encounter=encounter))


def test_reporter_is_told_once_when_candidates_are_ready(
    django_capture_on_commit_callbacks,  # noqa: ANN001
) -> None:
    species = species_register(name="Dog")
    version = zero_shot_version()
    volunteer = UserFactory(role="volunteer", email="vol@example.org")
    NotificationPreference.objects.create(user=volunteer, email_candidates_ready=True)
    query = AnnotationFactory(
        image__encounter__species=species,
        image__encounter__submitted_by=volunteer,
        image__encounter__status=Encounter.Status.PROCESSING,
    )
    gallery = [
        AnnotationFactory(
            image__encounter__species=species,
            individual=IndividualFactory(species=species),
            identity_source="import",
        )
        for _ in range(3)
    ]
    random_embeddings([query, *gallery], species=species, version=version)
    with django_capture_on_commit_callbacks(execute=True):
        annotation_identify(annotation_id=query.pk)
        annotation_identify(annotation_id=query.pk)  # matched again: nobody is told twice
    told = Notification.objects.get(user=volunteer)
    assert told.kind == Kind.CANDIDATES_READY
    assert told.link == reverse("sighting-detail", args=[query.image.encounter_id])
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["vol@example.org"]


def test_expert_decision_tells_the_reporter_in_the_app_and_by_email(
    django_capture_on_commit_callbacks,  # noqa: ANN001
) -> None:
    volunteer = UserFactory(role="volunteer", email="vera@example.org")
    annotation = _reported_animal(volunteer)
    known = IndividualFactory(species=annotation.species, code="DOG-7")
    with django_capture_on_commit_callbacks(execute=True):
        match_decide(
            annotation=annotation,
            verdict=IdentityDecision.Verdict.SAME,
            individual=known,
            decided_by=UserFactory(role="expert"),
        )
    told = Notification.objects.get(user=volunteer)
    assert told.kind == Kind.IDENTIFIED and "identified as DOG-7" in told.message
    assert told.emailed_at is not None
    (email,) = mail.outbox
    assert email.to == ["vera@example.org"] and "identified as DOG-7" in email.body
    assert f"/sightings/{annotation.image.encounter_id}/" in email.body

    client = Client()
    client.force_login(volunteer)
    home = client.get(reverse("home")).content.decode()
    assert 'class="nav-badge"' in home
    listing = client.get(reverse("notifications")).content.decode()
    assert "identified as DOG-7" in listing


def test_opening_the_list_marks_nothing_read_and_the_button_does() -> None:
    volunteer = UserFactory(role="volunteer")
    Notification.objects.create(
        user=volunteer, kind=Kind.IDENTIFIED, message="Your sighting #1 was identified as X-1."
    )
    client = Client(enforce_csrf_checks=True)
    client.force_login(volunteer)
    listing = client.get(reverse("notifications")).content.decode()
    assert "identified as X-1" in listing and 'class="nav-badge"' in listing
    assert Notification.objects.get().read_at is None
    form = re.search(
        r'<form method="post" action="([^"]+)" id="notifications-read">'
        r'<input type="hidden" name="csrfmiddlewaretoken" value="([^"]+)">',
        listing,
    )
    assert form, listing
    assert client.get(form[1]).status_code == 405
    assert client.post(form[1]).status_code == 403  # no CSRF token
    assert Notification.objects.get().read_at is None
    assert client.post(form[1], {"csrfmiddlewaretoken": form[2]}).status_code == 302
    assert Notification.objects.get().read_at is not None
    listing = client.get(reverse("notifications")).content.decode()
    assert 'class="nav-badge"' not in listing and 'id="notifications-read"' not in listing


def test_preferences_page_shows_the_defaults_without_saving_them() -> None:
    client = Client()
    client.force_login(UserFactory(role="volunteer"))
    page = client.get(reverse("notification-preferences")).content.decode()
    assert not NotificationPreference.objects.exists()
    checked = set(re.findall(r'<input type="checkbox" name="(email_\w+)"[^>]*\bchecked', page))
    defaults = {
        field.name
        for field in NotificationPreference._meta.fields
        if field.name.startswith("email_") and field.default is True
    }
    assert checked == defaults == {"email_identified", "email_seen_again"}


def test_new_individual_verdict_says_so(django_capture_on_commit_callbacks) -> None:  # noqa: ANN001
    volunteer = UserFactory(role="volunteer")
    annotation = _reported_animal(volunteer)
    with django_capture_on_commit_callbacks(execute=True):
        match_decide(
            annotation=annotation,
            verdict=IdentityDecision.Verdict.NEW,
            new_code="NEW-1",
            decided_by=UserFactory(role="expert"),
        )
    told = Notification.objects.get(user=volunteer)
    assert told.kind == Kind.NEW_INDIVIDUAL and "NEW-1" in told.message
    assert not mail.outbox  # no address given


def test_earlier_reporters_hear_their_animal_was_seen_again_without_the_place(
    django_capture_on_commit_callbacks,  # noqa: ANN001
) -> None:
    first_reporter = UserFactory(role="volunteer", email="first@example.org")
    known = IndividualFactory(code="ZEB-1")
    confirmed_sighting(individual=known, submitted_by=first_reporter)
    new_reporter = UserFactory(role="volunteer")
    annotation = _reported_animal(new_reporter, species=known.species)
    expert = UserFactory(role="expert")
    with django_capture_on_commit_callbacks(execute=True):
        match_decide(
            annotation=annotation,
            verdict=IdentityDecision.Verdict.SAME,
            individual=known,
            decided_by=expert,
        )
    again = Notification.objects.get(user=first_reporter)
    assert again.kind == Kind.SEEN_AGAIN and "ZEB-1" in again.message
    assert again.link == reverse("individual-detail", args=[known.pk])
    assert "1.23" not in again.message  # never the place
    assert list(Notification.objects.filter(user=new_reporter).values_list("kind", flat=True)) == [
        Kind.IDENTIFIED
    ]
    assert not Notification.objects.filter(user=expert).exists()
    assert [m.to for m in mail.outbox] == [["first@example.org"]]


def test_preferences_page_turns_an_email_off_but_the_app_still_lists_it(
    django_capture_on_commit_callbacks,  # noqa: ANN001
) -> None:
    reporter = UserFactory(role="volunteer")
    client = Client()
    client.force_login(reporter)
    response = client.post(
        reverse("notification-preferences"), {"email": "me@example.org", "email_identified": "on"}
    )
    assert response.status_code == 302
    reporter.refresh_from_db()
    assert reporter.email == "me@example.org"
    assert not NotificationPreference.objects.get(user=reporter).email_seen_again
    known = IndividualFactory()
    confirmed_sighting(individual=known, submitted_by=reporter)
    with django_capture_on_commit_callbacks(execute=True):
        match_decide(
            annotation=_reported_animal(None, species=known.species),
            verdict=IdentityDecision.Verdict.SAME,
            individual=known,
            decided_by=UserFactory(role="expert"),
        )
    assert Notification.objects.get(user=reporter).kind == Kind.SEEN_AGAIN
    assert not mail.outbox


def test_unreachable_mail_server_keeps_the_decision_and_records_why(
    settings,
    django_capture_on_commit_callbacks,  # noqa: ANN001
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 2
    volunteer = UserFactory(role="volunteer", email="v@example.org")
    annotation = _reported_animal(volunteer)
    known = IndividualFactory(species=annotation.species)
    with django_capture_on_commit_callbacks(execute=True):
        match_decide(
            annotation=annotation,
            verdict=IdentityDecision.Verdict.SAME,
            individual=known,
            decided_by=UserFactory(role="expert"),
        )
    annotation.refresh_from_db()
    assert annotation.individual == known
    told = Notification.objects.get(user=volunteer)
    assert told.emailed_at is None and told.email_error


def test_candidates_flagged_probably_new_say_so() -> None:
    from identification.models import Identification
    from identification.services.progress import encounter_status_refresh

    volunteer = UserFactory(role="volunteer")
    annotation = _reported_animal(volunteer)
    Encounter.objects.filter(pk=annotation.image.encounter_id).update(
        status=Encounter.Status.PROCESSING
    )
    Identification.objects.create(
        annotation=annotation, state=Identification.State.READY, probably_new=True
    )
    encounter_status_refresh(encounter_id=annotation.image.encounter_id)
    assert "not seen before" in Notification.objects.get(user=volunteer).message


def test_preferences_whose_email_cannot_be_stored_change_nothing() -> None:
    reporter = UserFactory(role="volunteer", email="old@example.org")
    NotificationPreference.objects.create(user=reporter, email_identified=True)
    client = Client()
    client.force_login(reporter)
    # Valid to the form (up to 320 characters) but longer than the account's 254.
    too_long = "me@" + ".".join(["a" * 60] * 5) + ".org"
    response = client.post(
        reverse("notification-preferences"), {"email": too_long, "email_seen_again": "on"}
    )
    assert response.status_code == 400
    assert "at most 254 characters" in response.content.decode()
    reporter.refresh_from_db()
    assert reporter.email == "old@example.org"
    # The preferences, written before the address, were rolled back with it.
    assert NotificationPreference.objects.get(user=reporter).email_identified
