"""Reads of notifications."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from notifications.models import Notification, NotificationPreference


def notification_list(*, user: AbstractBaseUser, limit: int = 100) -> QuerySet[Notification]:
    return Notification.objects.filter(user=user)[:limit]


def notification_unread_count(*, user: AbstractBaseUser) -> int:
    if not user.is_authenticated:
        return 0
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def notification_preference_get(*, user: AbstractBaseUser) -> NotificationPreference:
    """The person's e-mail choices: the defaults, unsaved, until they first save theirs (a
    page view or an e-mail never creates the row)."""
    preference = NotificationPreference.objects.filter(user=user).first()
    return preference or NotificationPreference(user=user)
