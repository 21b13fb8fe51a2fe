"""DRF glue shared by the apps' APIs."""

from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from wildweb.errors import ServiceError


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Turn a ServiceError into a JSON 4xx carrying its human message."""
    if isinstance(exc, ServiceError):
        body = {"detail": exc.message}
        if exc.field:
            body["field"] = exc.field
        return Response(body, status=exc.status_code)
    return drf_exception_handler(exc, context)
