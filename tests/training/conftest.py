from __future__ import annotations

from pathlib import Path

import pytest
from django.utils import timezone

from catalogue.models import Annotation, Species
from catalogue.services.imports import dataset_plan
from catalogue.services.sightings import UploadedPhoto
from identification.services.pipeline import dataset_ingest, sighting_submit, species_register

# Tiny runs: 64 px, one or a few epochs, small batches (2 shared CPU cores).
TINY = {
    "image_size": 64,
    "epochs": 1,
    "batch_size": 8,
    "samples_per_epoch": 48,
    "cached_views": 2,
    "eval_images_per_individual": 4,
}


def species_import(
    shared_datasets: Path, folder: str, name: str, individuals: int = 4, images: int = 4
) -> Species:
    species = species_register(name=name)
    plan = dataset_plan(
        metadata_csv=shared_datasets / folder / "metadata.csv",
        species=species,
        max_individuals=individuals,
        images_per_individual=images,
    )
    dataset_ingest(plan=plan)
    return species


def sighting_report(photo: Path, species: Species) -> Annotation:
    """An animal reported through the upload service, not identified yet."""
    result = sighting_submit(
        submitted_by=None,
        species=species,
        observed_at=timezone.now(),
        photos=[UploadedPhoto(filename=photo.name, data=photo.read_bytes())],
    )
    return Annotation.objects.get(image=result.images[0])


@pytest.fixture
def two_species(shared_datasets: Path) -> tuple[Species, Species]:
    """Chimpanzees (the species trained) and goldfish (the original data), 4 x 4 each."""
    chimp = species_import(shared_datasets, "chimp_faces_demo", "Chimpanzee")
    fish = species_import(shared_datasets, "fs48_fish", "Goldfish")
    return chimp, fish


@pytest.fixture
def small_chimp(shared_datasets: Path) -> Species:
    """Chimpanzees only, 4 x 3: two individuals to train on, two held out."""
    return species_import(shared_datasets, "chimp_faces_demo", "Chimpanzee", images=3)
