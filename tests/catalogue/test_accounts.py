"""Signing up and signing in: one write for a new account, and no password guessing."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from catalogue.roles import VOLUNTEER
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SIGNUP = {
    "username": "newbie",
    "email": "",
    "password1": "a-long-pass-phrase-9",
    "password2": "a-long-pass-phrase-9",
}


def test_a_signup_whose_role_cannot_be_given_leaves_no_account(client) -> None:  # noqa: ANN001
    Group.objects.filter(name=VOLUNTEER).delete()  # roles never synced on this server
    with pytest.raises(Group.DoesNotExist):
        client.post(reverse("signup"), SIGNUP)
    assert not User.objects.filter(username="newbie").exists()


@pytest.mark.parametrize("login_url", ["/accounts/login/", "/admin/login/"])
def test_guessing_a_password_gets_429_after_the_allowed_failures(settings, login_url) -> None:  # noqa: ANN001
    settings.LOGIN_FAILURES_MAX = 3
    user = UserFactory(role="admin")
    guesser = Client()
    answers = [
        guesser.post(login_url, {"username": user.username, "password": f"guess-{i}"}).status_code
        for i in range(5)
    ]
    assert answers == [200, 200, 200, 429, 429]
    # Blocked even with the right password: the window has to pass first.
    right = {"username": user.username, "password": "correct-horse-battery"}
    assert guesser.post(login_url, right).status_code == 429


def test_failures_from_one_address_block_it_for_every_username(settings) -> None:  # noqa: ANN001
    settings.LOGIN_FAILURES_MAX = 2
    guesser = Client()
    for name in ("alice", "bob"):
        assert (
            guesser.post("/accounts/login/", {"username": name, "password": "x"}).status_code == 200
        )
    assert (
        guesser.post("/accounts/login/", {"username": "carol", "password": "x"}).status_code == 429
    )
    # Someone elsewhere signs in as usual.
    user = UserFactory(role="volunteer")
    elsewhere = Client(REMOTE_ADDR="10.0.0.7")
    right = {"username": user.username, "password": "correct-horse-battery"}
    assert elsewhere.post("/accounts/login/", right).status_code == 302


def test_a_signed_in_user_guessing_another_account_is_counted(settings) -> None:  # noqa: ANN001
    settings.LOGIN_FAILURES_MAX = 2
    guesser = Client()
    guesser.force_login(UserFactory(role="volunteer"))
    victim = UserFactory(role="admin")
    answers = [
        guesser.post("/accounts/login/", {"username": victim.username, "password": "x"}).status_code
        for _ in range(3)
    ]
    assert answers == [200, 200, 429]


def test_with_the_cache_down_signing_in_and_the_api_still_work(settings) -> None:  # noqa: ANN001
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    user = UserFactory(role="volunteer")
    user.set_password("the-right-pass-phrase")
    user.save()
    visitor = Client()
    wrong = visitor.post("/accounts/login/", {"username": user.username, "password": "guess"})
    right = visitor.post(
        "/accounts/login/", {"username": user.username, "password": "the-right-pass-phrase"}
    )
    assert (wrong.status_code, right.status_code) == (200, 302)
    assert visitor.get(reverse("api-individuals")).status_code == 200
