"""DRF glue shared by the apps' APIs."""

from __future__ import annotations

import logging
import math

from redis.exceptions import RedisError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler

from wildweb.errors import ServiceError

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Turn a ServiceError into a JSON 4xx carrying its human message."""
    if isinstance(exc, ServiceError):
        body = {"detail": exc.message}
        if exc.field:
            body["field"] = exc.field
        return Response(body, status=exc.status_code)
    return drf_exception_handler(exc, context)


class _CurrentRate:
    """Read the rate from the settings on each request.

    DRF copies ``DEFAULT_THROTTLE_RATES`` into a class attribute at import, so a changed
    setting (a test's override) would otherwise never reach the throttle.
    """

    scope: str

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view) -> bool:  # noqa: ANN001
        try:
            return super().allow_request(request, view)
        except RedisError as error:  # the API must not depend on the cache being up
            logger.warning("request not throttled, the cache is unreachable: %s", error)
            return True


class AnonThrottle(_CurrentRate, AnonRateThrottle):
    """Anonymous callers, counted per client address (``NUM_PROXIES`` applies)."""


class UserThrottle(_CurrentRate, UserRateThrottle):
    """Signed-in callers, counted per user."""


class FiniteJSONRenderer(JSONRenderer):
    """JSON without NaN or infinities: such floats (stored before the validators, or a
    diverged training loss) are written as null instead of failing the whole response."""

    def render(self, data, accepted_media_type=None, renderer_context=None):  # noqa: ANN001, ANN201
        return super().render(_finite(data), accepted_media_type, renderer_context)


def _finite(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
