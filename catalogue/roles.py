"""The four roles, as Django groups with permissions.

anonymous: public pages only; volunteer: upload and vote; expert: confirm identities;
admin: species, imports, training (and the Django admin).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission

VOLUNTEER = "volunteer"
EXPERT = "expert"
ADMIN = "admin"
ROLES = (VOLUNTEER, EXPERT, ADMIN)

UPLOAD_PERMISSION = "catalogue.add_encounter"
VOTE_PERMISSION = "catalogue.vote_annotation"
DECIDE_PERMISSION = "catalogue.decide_annotation"
MANAGE_SPECIES_PERMISSION = "catalogue.add_species"

_VOLUNTEER_PERMISSIONS = [
    "catalogue.add_encounter",
    "catalogue.add_image",
    "catalogue.vote_annotation",
]
_EXPERT_PERMISSIONS = _VOLUNTEER_PERMISSIONS + [
    "catalogue.decide_annotation",
    "catalogue.change_annotation",
    "catalogue.add_individual",
    "catalogue.change_individual",
    "catalogue.view_encounter",
]
ROLE_PERMISSIONS = {
    VOLUNTEER: _VOLUNTEER_PERMISSIONS,
    EXPERT: _EXPERT_PERMISSIONS,
    # Admins get every permission of the three apps.
    ADMIN: ["catalogue.*", "identification.*", "training.*"],
}


def _permissions(codes: list[str]) -> list[Permission]:
    found: list[Permission] = []
    for code in codes:
        app_label, codename = code.split(".")
        queryset = Permission.objects.filter(content_type__app_label=app_label)
        if codename != "*":
            queryset = queryset.filter(codename=codename)
        found.extend(queryset)
    return found


def roles_sync() -> None:
    """Create the role groups and give each exactly its permissions (idempotent)."""
    for role, codes in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(_permissions(codes))


def roles_sync_after_migrate(sender: Any, **kwargs: Any) -> None:
    if sender.name == "catalogue":
        roles_sync()


def user_role(user: AbstractBaseUser | AnonymousUser) -> str | None:
    """The highest role a user holds, or None for anonymous visitors."""
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return ADMIN
    names = set(user.groups.values_list("name", flat=True))
    for role in reversed(ROLES):
        if role in names:
            return role
    return None


def user_role_set(*, user: AbstractBaseUser, role: str) -> None:
    """Give a user one role (replacing others); admins may use the Django admin."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    user.groups.set([Group.objects.get(name=role)])
    user.is_staff = role == ADMIN
    user.save(update_fields=["is_staff"])
