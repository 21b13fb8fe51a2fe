"""Species and individuals."""

from __future__ import annotations

from django.utils.text import slugify

from catalogue.models import Individual, Species
from wildweb.errors import full_clean


def species_create(
    *, name: str, sensitive: bool = False, viewpoints: list[str] | None = None
) -> Species:
    """A new species; ``identification.services.pipeline.species_register`` also readies its
    model setting and vector index, and is what the app calls."""
    species = Species(
        name=name.strip(), slug=slugify(name), sensitive=sensitive, viewpoints=viewpoints or []
    )
    full_clean(species)
    species.save()
    return species


def individual_create(
    *, species: Species, code: str, name: str = "", sex: str = "unknown", is_public: bool = True
) -> Individual:
    individual = Individual(
        species=species, code=code.strip(), name=name.strip(), sex=sex, is_public=is_public
    )
    full_clean(individual)
    individual.save()
    return individual
