"""Who may open which page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from catalogue.roles import ADMIN, EXPERT, VOLUNTEER, user_role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "role, upload_status, admin_status",
    [
        (None, 302, 302),  # anonymous: sent to the sign-in page
        (VOLUNTEER, 200, 302),
        (EXPERT, 200, 302),
        (ADMIN, 200, 200),
    ],
)
def test_role_access_to_upload_and_admin_pages(client, role, upload_status, admin_status) -> None:  # noqa: ANN001
    if role:
        client.force_login(UserFactory(role=role))
    upload = client.get(reverse("sighting-create"))
    admin = client.get(reverse("admin:index"))
    assert upload.status_code == upload_status
    assert admin.status_code == admin_status
    if role is None:
        assert upload.url.startswith(reverse("login"))


def test_user_without_role_cannot_upload(client) -> None:  # noqa: ANN001
    client.force_login(UserFactory())
    assert client.get(reverse("sighting-create")).status_code == 403
    assert client.post(reverse("api-sightings"), {}).status_code == 403


def test_anonymous_api_upload_is_refused(client) -> None:  # noqa: ANN001
    assert client.post(reverse("api-sightings"), {}).status_code in (401, 403)


def test_admin_can_open_species_admin(client) -> None:  # noqa: ANN001
    client.force_login(UserFactory(role=ADMIN))
    assert client.get(reverse("admin:catalogue_species_add")).status_code == 200


def test_signup_creates_a_volunteer(client) -> None:  # noqa: ANN001
    response = client.post(
        reverse("signup"),
        {
            "username": "newbie",
            "email": "",
            "password1": "a-long-pass-phrase-9",
            "password2": "a-long-pass-phrase-9",
        },
    )
    assert response.status_code == 302
    from django.contrib.auth.models import User

    user = User.objects.get(username="newbie")
    assert user_role(user) == VOLUNTEER
    assert user.has_perm("catalogue.add_encounter") and not user.has_perm(
        "catalogue.decide_annotation"
    )


def test_expert_may_decide_but_volunteer_may_not() -> None:
    assert UserFactory(role=EXPERT).has_perm("catalogue.decide_annotation")
    assert not UserFactory(role=VOLUNTEER).has_perm("catalogue.decide_annotation")
