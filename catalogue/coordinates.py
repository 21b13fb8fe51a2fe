"""Where a sighting may be shown: exact for experts and admins, coarsened for sensitive species.

Poachers read public maps too. Every public page, API response and export of a sensitive
species' sighting goes through :func:`encounter_coordinates`, which snaps the point to a grid
of ``settings.SENSITIVE_COORDINATE_GRID`` degrees unless the viewer may see exact places.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from catalogue.models import Encounter, Species
from catalogue.roles import DECIDE_PERMISSION


@dataclass(frozen=True)
class Coordinates:
    latitude: float | None
    longitude: float | None
    coarsened: bool = False

    @property
    def known(self) -> bool:
        return self.latitude is not None and self.longitude is not None


def coordinate_coarsen(value: float, *, grid: float | None = None) -> float:
    """``value`` rounded to the nearest multiple of ``grid`` degrees (half away from zero).

    The result is rounded to as many decimals as the grid has, so no float noise such as
    51.300000000000004 reaches a page.
    """
    grid = grid or settings.SENSITIVE_COORDINATE_GRID
    decimals = max(0, -math.floor(math.log10(grid))) if grid < 1 else 0
    cells = math.floor(abs(value) / grid + 0.5)
    return round(math.copysign(cells * grid, value), decimals + 1)


def user_sees_exact_coordinates(user: AbstractBaseUser | AnonymousUser | None) -> bool:
    """Experts and admins (``catalogue.decide_annotation``; superusers have every permission)."""
    return bool(user is not None and user.is_authenticated and user.has_perm(DECIDE_PERMISSION))


def coordinates_for(
    *, species: Species, latitude: float | None, longitude: float | None, exact: bool
) -> Coordinates:
    """The point as a viewer may see it; ``exact`` says whether that viewer may see exact ones."""
    if latitude is None or longitude is None:
        return Coordinates(None, None)
    if exact or not species.sensitive:
        return Coordinates(latitude, longitude)
    return Coordinates(coordinate_coarsen(latitude), coordinate_coarsen(longitude), coarsened=True)


def encounter_coordinates(
    *, encounter: Encounter, user: AbstractBaseUser | AnonymousUser | None
) -> Coordinates:
    return coordinates_for(
        species=encounter.species,
        latitude=encounter.latitude,
        longitude=encounter.longitude,
        exact=user_sees_exact_coordinates(user),
    )
