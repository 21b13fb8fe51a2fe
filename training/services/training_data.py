"""A training run's data: crops and ``metadata.csv`` folders in the shared dataset schema.

Per species, individuals are split into train, held-out and (for the run's species) early-
stopping sets; the export is written once per run folder and reused when the run resumes.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from catalogue.models import Annotation, Species
from identification.services.crops import annotation_crop
from training.models import TrainingRun

EXPORT_MAX_SIDE = 512  # crops are stored no larger; training and SIFT never need more
VALIDATION_MIN_INDIVIDUALS = 3  # fewer: no early stopping, the last epoch is kept


def run_directory(*, run: TrainingRun) -> Path:
    """The run's own folder, named by its uuid so that only this run ever resumes from it; in
    the private root, since manifests hold server paths and crops show private and sensitive
    animals."""
    return Path(settings.PRIVATE_ROOT) / "training" / f"run-{run.uuid}"


@dataclass
class TrainingData:
    """What a run trains on and is measured on, as dataset folders in the shared schema."""

    train_dirs: list[str]
    held_out_dirs: dict[str, str]  # species slug -> folder of held-out individuals
    names: dict[str, str]  # species slug -> species name
    counts: dict[str, Any] = field(default_factory=dict)
    # The run's species' early-stopping individuals: disjoint from training and from its
    # reported held-out set, so choosing the best epoch does not flatter the report.
    validation_dir: str | None = None


def training_data_export(*, run: TrainingRun, directory: Path) -> TrainingData:
    """Write the crops and ``metadata.csv`` files a run needs (reused when resuming).

    Per species, individuals are split with ``reid.splits.disjoint_identity_split``
    (encounter-safe, identities disjoint). The run's species always trains on its train side;
    other species' train sides are added only in ``with-original-data`` mode. Every species'
    held-out side is measured (the forgetting check). When the run's species has at least
    ``2 * VALIDATION_MIN_INDIVIDUALS`` held-out individuals, a third of them (at least
    ``VALIDATION_MIN_INDIVIDUALS``) become the early-stopping set instead.
    """
    manifest_path = directory / "manifest.json"
    if manifest_path.exists():
        return TrainingData(**json.loads(manifest_path.read_text()))
    others = (
        Species.objects.exclude(pk=run.species_id)
        .filter(annotations__individual__isnull=False)
        .distinct()
        .order_by("pk")
    )
    data = TrainingData(train_dirs=[], held_out_dirs={}, names={})
    for species in [run.species, *others]:
        records, by_record = _species_records(species=species, directory=directory)
        sides = _species_sides(run=run, species=species, records=records)
        if sides is None:
            continue
        train, held, validation = sides
        for record in [*train, *held, *validation]:
            _crop_write(by_record[record.image_id], Path(record.path))
        _species_folders_write(
            data=data,
            species=species,
            directory=directory,
            train=train,
            held=held,
            validation=validation,
        )
    manifest_path.write_text(json.dumps(data.__dict__, indent=2))
    return data


def _species_records(*, species: Species, directory: Path) -> tuple[list, dict[str, Annotation]]:
    """The species' identified annotations as records whose crops go under ``directory``, and
    the annotation of each record by its ``image_id``."""
    from reid.data import Record

    annotations = (
        Annotation.objects.filter(species=species, individual__isnull=False)
        .select_related("image", "individual")
        .order_by("pk")
    )
    by_record: dict[str, Annotation] = {}
    records = []
    for annotation in annotations:
        record = Record(
            image_id=f"a{annotation.pk}",
            identity=annotation.individual.code,
            species=species.slug,
            viewpoint=annotation.viewpoint,
            path=str(directory / species.slug / "images" / f"{annotation.pk}.jpg"),
            encounter=f"e{annotation.image.encounter_id}",
            dataset=species.slug,
        )
        by_record[record.image_id] = annotation
        records.append(record)
    return records, by_record


def _species_sides(
    *, run: TrainingRun, species: Species, records: list
) -> tuple[list, list, list] | None:
    """The species' (train, held-out, validation) records; None for another species with
    too few individuals to measure.

    Raises:
        ValueError: The run's own species has too few individuals to train and measure.
    """
    from reid.data import subset_records
    from reid.splits import disjoint_identity_split

    hp = run.hyperparameters
    is_target = species.pk == run.species_id
    records = subset_records(
        records,
        min_per_identity=2,
        seed=hp["seed"],
        identities=hp["max_individuals"] if is_target else hp["original_max_individuals"],
        max_per_identity=(
            hp["images_per_individual"] if is_target else hp["original_images_per_individual"]
        ),
    )
    identities = len({r.identity for r in records})
    if identities < 3:
        if is_target:
            raise ValueError(f"{species} has only {identities} individual(s) with 2+ photos.")
        return None
    fraction = max(hp["validation_fraction"], 2 / identities)
    split = disjoint_identity_split(records, test_fraction=fraction, seed=hp["seed"])
    held = subset_records(
        split.test,
        identities=hp["eval_max_individuals"],
        max_per_identity=hp["eval_images_per_individual"],
        min_per_identity=2,
        seed=hp["seed"],
    )
    validation = []
    if is_target:
        validation, held = _validation_split(held, seed=hp["seed"])
    with_original = run.mode == TrainingRun.Mode.WITH_ORIGINAL_DATA
    train = split.train if (is_target or with_original) else []
    if is_target and not train:
        raise ValueError(f"No {species} individuals are left to train on after holding some out.")
    return train, held, validation


def _species_folders_write(
    *,
    data: TrainingData,
    species: Species,
    directory: Path,
    train: list,
    held: list,
    validation: list,
) -> None:
    """Write the species' non-empty sides as ``metadata.csv`` folders and record them and
    their counts in ``data``."""
    from reid.data import write_metadata

    if validation:
        write_metadata(validation, directory / f"validation-{species.slug}")
        data.validation_dir = str(directory / f"validation-{species.slug}")
    if train:
        write_metadata(train, directory / f"train-{species.slug}")
        data.train_dirs.append(str(directory / f"train-{species.slug}"))
    if held:
        write_metadata(held, directory / f"held-{species.slug}")
        data.held_out_dirs[species.slug] = str(directory / f"held-{species.slug}")
    data.names[species.slug] = species.name
    data.counts[species.name] = {
        "train_images": len(train),
        "train_individuals": len({r.identity for r in train}),
        "held_out_images": len(held),
        "held_out_individuals": len({r.identity for r in held}),
        **(
            {
                "validation_images": len(validation),
                "validation_individuals": len({r.identity for r in validation}),
            }
            if validation
            else {}
        ),
    }


def _validation_split(held: list, *, seed: int) -> tuple[list, list]:
    """(validation, held-out) records: a third of the held-out individuals, when enough."""
    identities = sorted({r.identity for r in held})
    if len(identities) < 2 * VALIDATION_MIN_INDIVIDUALS:
        return [], held
    count = max(VALIDATION_MIN_INDIVIDUALS, len(identities) // 3)
    chosen = set(random.Random(seed).sample(identities, count))
    return (
        [r for r in held if r.identity in chosen],
        [r for r in held if r.identity not in chosen],
    )


def _crop_write(annotation: Annotation, path: Path) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    crop = annotation_crop(annotation=annotation)
    crop.thumbnail((EXPORT_MAX_SIDE, EXPORT_MAX_SIDE))
    temporary = path.with_suffix(".tmp.jpg")
    crop.save(temporary, "JPEG", quality=92)
    temporary.replace(path)
