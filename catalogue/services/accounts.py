"""People's accounts: signing up, and counting failed sign-ins so guessing passwords stops.

Failed sign-ins are counted in Django's cache (Redis, shared by every web process) per client
address and per username, each in a fixed window of ``LOGIN_FAILURE_WINDOW_SECONDS``. Once
either count reaches ``LOGIN_FAILURES_MAX`` the login view answers 429 until the window ends.
With Redis down the counting is skipped (logged): signing in must not depend on the cache.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from redis.exceptions import RedisError

from catalogue.roles import VOLUNTEER, user_role_set
from wildweb.errors import full_clean

logger = logging.getLogger(__name__)


@transaction.atomic
def user_signup(*, username: str, email: str, password: str) -> User:
    """A new volunteer; the account and its role are written together or not at all."""
    user = User(username=username, email=email)
    user.set_password(password)
    full_clean(user)
    user.save()
    user_role_set(user=user, role=VOLUNTEER)
    return user


def _login_failure_keys(*, client_address: str, username: str) -> list[str]:
    # Hashed: a typed username may hold anything, and cache keys must stay short and plain.
    account = hashlib.sha256(username.strip().lower().encode()).hexdigest()
    return [f"login-failures:ip:{client_address}", f"login-failures:user:{account}"]


def login_failure_record(*, client_address: str, username: str) -> None:
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    try:
        for key in _login_failure_keys(client_address=client_address, username=username):
            # add() starts the window only if none is running; incr() keeps its expiry.
            cache.add(key, 0, timeout=window)
            try:
                cache.incr(key)
            except ValueError:  # the window ended between add() and incr()
                cache.set(key, 1, timeout=window)
    except RedisError as error:
        logger.warning("failed sign-in not counted, the cache is unreachable: %s", error)


def login_failures_clear(*, username: str) -> None:
    """After a successful sign-in the account's own count starts again; the address's stays."""
    try:
        cache.delete(_login_failure_keys(client_address="", username=username)[1])
    except RedisError as error:
        logger.warning("sign-in count not cleared, the cache is unreachable: %s", error)


def login_blocked(*, client_address: str, username: str) -> bool:
    keys = _login_failure_keys(client_address=client_address, username=username)
    try:
        counts = cache.get_many(keys)
    except RedisError as error:
        logger.warning("sign-in not checked for guessing, the cache is unreachable: %s", error)
        return False
    return any(count >= settings.LOGIN_FAILURES_MAX for count in counts.values())
