from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from notifications import selectors, services
from notifications.forms import NotificationPreferenceForm
from wildweb.errors import ServiceError


@login_required
def notification_list(request: HttpRequest) -> HttpResponse:
    """The person's notifications, newest first; opening the list changes nothing."""
    notifications = list(selectors.notification_list(user=request.user))
    return render(request, "notifications/list.html", {"notifications": notifications})


@login_required
@require_POST
def notifications_read(request: HttpRequest) -> HttpResponse:
    """The list's "Mark all read" button. Only a POST marks them: a GET (a reload, a link
    preview, a browser's prefetch) changes nothing."""
    services.notifications_mark_read(user=request.user)
    return redirect("notifications")


@login_required
def notification_preferences(request: HttpRequest) -> HttpResponse:
    preference = selectors.notification_preference_get(user=request.user)
    form = NotificationPreferenceForm(
        request.POST or None, instance=preference, initial={"email": request.user.email}
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.notification_preference_update(user=request.user, **form.cleaned_data)
        except ServiceError as error:
            form.add_error(error.field, error.message)
        else:
            messages.success(request, "Your notification settings were saved.")
            return redirect("notification-preferences")
    status = 400 if request.method == "POST" else 200
    return render(request, "notifications/preferences.html", {"form": form}, status=status)
