"""Coarsening of sensitive species' places (no database needed for the arithmetic)."""

from __future__ import annotations

import pytest

from catalogue.coordinates import coordinate_coarsen, coordinates_for
from catalogue.models import Species


@pytest.mark.parametrize(
    ("value", "grid", "expected"),
    [
        (51.23456, 0.1, 51.2),
        (-0.98765, 0.1, -1.0),
        (0.04, 0.1, 0.0),
        (-0.05, 0.1, -0.1),
        (12.345, 0.25, 12.25),
        (179.96, 0.1, 180.0),
        (-33.8688, 1.0, -34.0),
        (7.777, 0.01, 7.78),
    ],
)
def test_coordinates_snap_to_the_nearest_grid_line_without_float_noise(
    value, grid, expected
) -> None:
    assert coordinate_coarsen(value, grid=grid) == expected
    assert len(repr(coordinate_coarsen(value, grid=grid))) <= 7


def test_default_grid_comes_from_settings(settings) -> None:
    settings.SENSITIVE_COORDINATE_GRID = 0.5
    assert coordinate_coarsen(51.3) == 51.5


def test_only_sensitive_species_are_coarsened_and_only_for_the_public() -> None:
    sensitive, common = Species(name="Lynx", sensitive=True), Species(name="Fox")
    public = coordinates_for(species=sensitive, latitude=51.23456, longitude=-0.98765, exact=False)
    assert (public.latitude, public.longitude, public.coarsened) == (51.2, -1.0, True)
    expert = coordinates_for(species=sensitive, latitude=51.23456, longitude=-0.98765, exact=True)
    assert (expert.latitude, expert.longitude, expert.coarsened) == (51.23456, -0.98765, False)
    fox = coordinates_for(species=common, latitude=51.23456, longitude=-0.98765, exact=False)
    assert (fox.latitude, fox.coarsened) == (51.23456, False)
    assert not coordinates_for(species=sensitive, latitude=None, longitude=None, exact=False).known
