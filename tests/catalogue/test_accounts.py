"""Signing up: one write for a new account."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from catalogue.roles import VOLUNTEER

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
