"""The app's URLs plus one view that fails, to see the 500 page (tests only)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from wildweb.urls import urlpatterns as app_urlpatterns


def failing_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug, on purpose")


urlpatterns = [*app_urlpatterns, path("test-failure/", failing_view)]
