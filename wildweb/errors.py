"""The one error type services raise; views and the API turn it into a 4xx with its message."""

from __future__ import annotations

from django.core.exceptions import ValidationError


class ServiceError(Exception):
    """A request that cannot be carried out, with a message meant for the person who made it."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ConflictError(ServiceError):
    """Someone else changed the same thing first."""

    status_code = 409


def full_clean(instance: object) -> None:
    """Validate a model instance, turning Django's ValidationError into a ServiceError."""
    try:
        instance.full_clean()
    except ValidationError as error:
        messages = [
            f"{name}: {' '.join(errors)}" if name != "__all__" else " ".join(errors)
            for name, errors in error.message_dict.items()
        ]
        raise ServiceError("; ".join(messages)) from None
