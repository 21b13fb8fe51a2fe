"""Who the API lets in, and how often: sessions and tokens, no Basic auth, throttled callers."""

from __future__ import annotations

import base64

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_basic_auth_credentials_are_not_accepted_by_the_api(client) -> None:  # noqa: ANN001
    volunteer = UserFactory(role="volunteer")
    response = client.get(
        reverse("api-sightings"),
        HTTP_AUTHORIZATION=_basic(volunteer.username, "correct-horse-battery"),
    )
    assert response.status_code in (401, 403)


def test_a_token_signs_a_script_in(client) -> None:  # noqa: ANN001
    token = Token.objects.create(user=UserFactory(role="volunteer"))
    response = client.get(reverse("api-sightings"), HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 200


def _with_rates(settings, **rates: str) -> None:  # noqa: ANN001
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "1000/minute", "user": "1000/minute", **rates},
    }


def test_an_anonymous_api_flood_gets_429(client, settings) -> None:  # noqa: ANN001
    _with_rates(settings, anon="3/minute")
    answers = [client.get(reverse("api-species")).status_code for _ in range(5)]
    assert answers == [200, 200, 200, 429, 429]
    # Another address has its own allowance.
    assert client.get(reverse("api-species"), REMOTE_ADDR="10.0.0.9").status_code == 200


def test_a_signed_in_api_flood_gets_429_per_user(settings) -> None:  # noqa: ANN001
    _with_rates(settings, user="2/minute")
    flooder, other = Client(), Client()
    flooder.force_login(UserFactory(role="volunteer"))
    other.force_login(UserFactory(role="volunteer"))
    answers = [flooder.get(reverse("api-sightings")).status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    assert other.get(reverse("api-sightings")).status_code == 200
