"""Species and individuals."""

from __future__ import annotations

from django.utils.text import slugify

from catalogue.models import Individual, Species
from wildweb.errors import full_clean


def species_create(
    *, name: str, sensitive: bool = False, viewpoints: list[str] | None = None
) -> Species:
    species = Species(
        name=name.strip(), slug=slugify(name), sensitive=sensitive, viewpoints=viewpoints or []
    )
    full_clean(species)
    species.save()
    from identification.services.models import species_model_setting

    species_model_setting(species=species)  # its vector index exists from the start
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
