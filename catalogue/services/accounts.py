"""People's accounts: signing up."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from catalogue.roles import VOLUNTEER, user_role_set
from wildweb.errors import full_clean


@transaction.atomic
def user_signup(*, username: str, email: str, password: str) -> User:
    """A new volunteer; the account and its role are written together or not at all."""
    user = User(username=username, email=email)
    user.set_password(password)
    full_clean(user)
    user.save()
    user_role_set(user=user, role=VOLUNTEER)
    return user
