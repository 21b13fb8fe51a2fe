"""What volunteers are told about their sightings, and how they want to be told."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Notification(models.Model):
    """One message to one person, shown in the app and, if they want, sent by e-mail."""

    class Kind(models.TextChoices):
        CANDIDATES_READY = "candidates_ready", "Candidates ready"
        IDENTIFIED = "identified", "Identified"
        NEW_INDIVIDUAL = "new_individual", "New individual"
        SEEN_AGAIN = "seen_again", "Seen again"
        IMPORT_FINISHED = "import_finished", "Import finished"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    message = models.CharField(max_length=300)
    link = models.CharField(max_length=200, blank=True, help_text="A page of the site.")
    encounter = models.ForeignKey(
        "catalogue.Encounter", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    individual = models.ForeignKey(
        "catalogue.Individual", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    # The e-mail is a job like any other: wanted (the person's wish when the notification was
    # made), handed to the broker, then sent or given up; the job sweep sends again what is
    # wanted and neither (``notification_emails_recover``).
    email_wanted = models.BooleanField(default=False)
    email_queued_at = models.DateTimeField(
        null=True, blank=True, help_text="Last handed to the broker (first send, retry, sweep)."
    )
    email_tries = models.PositiveSmallIntegerField(default=0, help_text="Failed tries so far.")
    emailed_at = models.DateTimeField(null=True, blank=True)
    email_failed_at = models.DateTimeField(
        null=True, blank=True, help_text="Given up: the address was refused or tries ran out."
    )
    email_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["user", "read_at"]),
            # The sweep's question, asked every JOBS_SWEEP_SECONDS of a table that only grows.
            models.Index(
                fields=["created_at"],
                name="notification_email_pending",
                condition=Q(
                    email_wanted=True, emailed_at__isnull=True, email_failed_at__isnull=True
                ),
            ),
        ]
        constraints = [
            # Matching again or re-deciding the same thing does not tell anyone twice; the
            # link tells imports (which name no encounter or individual) apart.
            models.UniqueConstraint(
                fields=["user", "kind", "encounter", "individual", "link"],
                name="one_notification_per_event",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return self.message


class NotificationPreference(models.Model):
    """Which notifications a person also wants by e-mail (all are always listed in the app)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="notification_preference",
    )
    email_candidates_ready = models.BooleanField(
        "the model has suggested who my animal is", default=False
    )
    email_identified = models.BooleanField(
        "an expert has identified my sighting, or found it is a new individual",
        default=True,
    )
    email_seen_again = models.BooleanField("an animal I reported is seen again", default=True)

    def wants_email(self, kind: str) -> bool:
        return {
            Notification.Kind.CANDIDATES_READY: self.email_candidates_ready,
            Notification.Kind.IDENTIFIED: self.email_identified,
            Notification.Kind.NEW_INDIVIDUAL: self.email_identified,
            Notification.Kind.SEEN_AGAIN: self.email_seen_again,
            Notification.Kind.IMPORT_FINISHED: False,  # an admin's own job: shown in the app
        }[kind]
