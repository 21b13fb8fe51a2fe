from __future__ import annotations

from django.http import HttpRequest

from notifications.selectors import notification_unread_count


def unread(request: HttpRequest) -> dict:
    """The badge on the menu's "Notifications" link."""
    return {"unread_notifications": notification_unread_count(user=request.user)}
