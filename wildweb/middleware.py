"""The app's own "not found" answers look like the rest of the site, even with DEBUG on."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.defaults import page_not_found


class StyledNotFoundMiddleware:
    """Render ``404.html`` for ``Http404`` raised by a view when ``DEBUG`` is on.

    With ``DEBUG`` off Django does this itself. With it on, Django shows its technical page,
    listing every URL: right for a mistyped address during development, a dead end for a
    merged individual's old page or a sighting that is not yours. Addresses that match no
    URL pattern never reach a view, so they still get the technical page in development.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if settings.DEBUG and isinstance(exception, Http404):
            return page_not_found(request, exception)
        return None
