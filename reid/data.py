"""Datasets in the shared schema, image transforms and a class-balanced sampler.

A dataset folder holds ``metadata.csv`` in the ingestion schema of :mod:`reid.schema`
(wildlife-datasets convention); a missing ``species`` is the folder's name. ``path`` is
relative to the folder or absolute; ``bbox`` is ``[x, y, w, h]`` in pixels.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from reid.schema import (
    REQUIRED_COLUMNS,
    SchemaError,
    parse_bbox,
    parse_date,
    parse_viewpoint,
    read_metadata_csv,
    validate_bbox,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Record:
    """One annotated image.

    Attributes:
        image_id: unique id of the image.
        identity: individual's label, unique within its species.
        species: common name.
        path: absolute path of the image file.
        bbox: ``(x, y, w, h)`` crop in pixels, or ``None`` for the whole image.
        date: ISO timestamp or empty.
        viewpoint: free text or empty.
        encounter: groups near-identical frames; empty means the image is its own encounter.
        dataset: name of the folder the record came from.
    """

    image_id: str
    identity: str
    species: str
    path: str
    bbox: tuple[float, float, float, float] | None = None
    date: str = ""
    viewpoint: str = ""
    encounter: str = ""
    dataset: str = ""

    @property
    def class_key(self) -> str:
        """Training class: the pair (species, identity) as one string."""
        return f"{self.species}/{self.identity}"

    @property
    def encounter_key(self) -> str:
        """Leakage unit for splits; an image without encounter is its own encounter."""
        if self.encounter:
            return f"{self.dataset}/{self.species}/{self.encounter}"
        return f"{self.dataset}/image/{self.image_id}"


def load_records(dirs: str | Path | Iterable[str | Path]) -> list[Record]:
    """Read ``metadata.csv`` of one or more dataset folders.

    Args:
        dirs: dataset folder or folders.

    Returns:
        Records with absolute paths, in file order, folder after folder.

    Raises:
        SchemaError: (a ``ValueError``) when a required column is missing, an image id
            repeats, or a box or date breaks the schema (:mod:`reid.schema`).
    """
    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    records: list[Record] = []
    seen: set[tuple[str, str]] = set()
    for directory in dirs:
        root = Path(directory).resolve()
        for row in read_metadata_csv(root / "metadata.csv"):
            key = (root.name, row.get("image_id"))
            if key in seen:
                raise SchemaError(f"duplicate image_id {row.get('image_id')} in {root}")
            seen.add(key)
            path = Path(row.get("path"))
            try:
                bbox = parse_bbox(row.get("bbox"))
                bbox = validate_bbox(bbox) if bbox else None
                parse_date(row.get("date"))
            except SchemaError as error:
                raise SchemaError(f"{root / 'metadata.csv'} line {row.line}: {error}") from None
            records.append(
                Record(
                    image_id=row.get("image_id"),
                    identity=row.get("identity"),
                    species=row.get("species") or root.name,
                    path=str(path if path.is_absolute() else root / path),
                    bbox=bbox,
                    date=row.get("date"),
                    viewpoint=parse_viewpoint(row.get("viewpoint")),
                    encounter=row.get("encounter"),
                    dataset=root.name,
                )
            )
    return records


def write_metadata(records: Sequence[Record], directory: str | Path) -> Path:
    """Write records as a ``metadata.csv`` (absolute paths) so a subset can be used as a dataset.

    Args:
        records: records to write.
        directory: target folder (created).

    Returns:
        Path of the written file.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "metadata.csv"
    columns = [*REQUIRED_COLUMNS, "species", "bbox", "date", "viewpoint", "encounter"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for r in records:
            bbox = json.dumps(list(r.bbox)) if r.bbox else ""
            writer.writerow(
                [
                    r.image_id,
                    r.identity,
                    r.path,
                    r.species,
                    bbox,
                    r.date,
                    r.viewpoint,
                    r.encounter or f"image:{r.image_id}",
                ]
            )
    return path


def subset_records(
    records: Sequence[Record],
    *,
    identities: int | None = None,
    max_per_identity: int | None = None,
    min_per_identity: int = 1,
    seed: int = 0,
) -> list[Record]:
    """Pick a deterministic subset: some identities per species, few images each.

    Args:
        records: all records.
        identities: keep at most this many identities per species (random, seeded).
        max_per_identity: keep at most this many images per identity (random, seeded).
        min_per_identity: drop identities with fewer images (after capping).
        seed: random seed.

    Returns:
        The subset, in the original order.
    """
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_class[record.class_key].append(index)
    by_species: dict[str, list[str]] = defaultdict(list)
    for key in sorted(by_class):
        by_species[records[by_class[key][0]].species].append(key)
    keep: list[int] = []
    for species in sorted(by_species):
        keys = [k for k in by_species[species] if len(by_class[k]) >= min_per_identity]
        if identities is not None and len(keys) > identities:
            keys = sorted(rng.sample(keys, identities))
        for key in keys:
            indices = by_class[key]
            if max_per_identity is not None and len(indices) > max_per_identity:
                indices = sorted(rng.sample(indices, max_per_identity))
            if len(indices) >= min_per_identity:
                keep.extend(indices)
    return [records[i] for i in sorted(keep)]


def load_image(record_or_path: Record | str | Path) -> Image.Image:
    """Open an image as RGB, cropped to the record's bbox when it has one."""
    path = record_or_path.path if isinstance(record_or_path, Record) else record_or_path
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    if isinstance(record_or_path, Record) and record_or_path.bbox is not None:
        x, y, w, h = record_or_path.bbox
        image = image.crop((int(x), int(y), int(round(x + w)), int(round(y + h))))
    return image


def eval_transform(image_size: int) -> Callable[[Image.Image], Any]:
    """Resize to ``image_size x image_size`` (no crop), tensor, ImageNet mean/std.

    Accepts PIL images of any mode.
    """
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Lambda(_to_rgb),
            T.Resize((image_size, image_size), antialias=True),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


AUGMENTATIONS = ("standard", "miewid")


def train_transform(
    image_size: int,
    hflip: bool = False,
    grayscale_p: float = 0.2,
    rotation_degrees: float = 10.0,
    style: str = "standard",
) -> Callable[[Image.Image], Any]:
    """Training augmentation.

    ``"standard"``: random resized crop, colour jitter, random grayscale (infrared night
    frames), small rotation. ``"miewid"``: the augmentations MiewID trains with (Otarashvili
    et al. 2024), in torchvision terms: shift-scale-rotate, colour jitter, one of
    equalisation (for CLAHE), sharpening or grayscale, and a corner occluded. No horizontal
    flip by default in either: many species are identified by asymmetric markings, and a
    mirrored flank is a different pattern.

    Args:
        image_size: output side.
        hflip: add random horizontal flips.
        grayscale_p: probability of converting to grayscale (``"standard"``).
        rotation_degrees: maximal rotation either way.
        style: one of :data:`AUGMENTATIONS`.

    Returns:
        A transform from PIL image to normalised tensor.
    """
    from torchvision import transforms as T

    if style not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {style!r}")
    steps: list[Any] = [T.Lambda(_to_rgb)]
    if style == "standard":
        steps += [
            T.RandomResizedCrop(image_size, scale=(0.6, 1.0), ratio=(0.75, 1.333), antialias=True),
            T.RandomApply([T.ColorJitter(0.3, 0.3, 0.2, 0.02)], p=0.8),
            T.RandomGrayscale(p=grayscale_p),
            T.RandomRotation(rotation_degrees),
        ]
    else:
        steps += [
            T.Resize((image_size, image_size), antialias=True),
            T.RandomApply(
                [T.RandomAffine(rotation_degrees, translate=(0.1, 0.1), scale=(0.85, 1.15))], p=0.8
            ),
            T.RandomApply([T.ColorJitter(0.3, 0.3, 0.2, 0.02)], p=0.8),
            T.RandomApply(
                [
                    T.RandomChoice(
                        [
                            T.RandomEqualize(p=1.0),
                            T.RandomAdjustSharpness(2.0, p=1.0),
                            T.Grayscale(3),
                        ]
                    )
                ],
                p=0.5,
            ),
        ]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if style == "miewid":
        steps.append(CornerOcclusion(p=0.3))
    return T.Compose(steps)


class CornerOcclusion:
    """Blank a rectangle (20-40% of each side) in a random corner of a normalised tensor.

    Bodies are often cut off by the frame or hidden behind grass; with the corner set to 0
    (the mean colour after normalisation) the network cannot lean on one region alone.
    """

    def __init__(self, p: float = 0.3, size: tuple[float, float] = (0.2, 0.4)) -> None:
        self.p, self.size = p, size

    def __call__(self, tensor: Any) -> Any:
        import torch

        if torch.rand(()) >= self.p:
            return tensor
        _, height, width = tensor.shape
        low, high = self.size
        h = int(height * (low + (high - low) * float(torch.rand(()))))
        w = int(width * (low + (high - low) * float(torch.rand(()))))
        top = 0 if torch.rand(()) < 0.5 else height - h
        left = 0 if torch.rand(()) < 0.5 else width - w
        tensor = tensor.clone()
        tensor[:, top : top + h, left : left + w] = 0
        return tensor


def _to_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


class RecordDataset:
    """Torch-style dataset of ``(image_tensor, label)`` pairs.

    Args:
        records: images.
        labels: class index per record.
        transform: PIL -> tensor transform.
    """

    def __init__(
        self, records: Sequence[Record], labels: Sequence[int], transform: Callable[..., Any]
    ) -> None:
        self.records = list(records)
        self.labels = list(labels)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.transform(load_image(self.records[index])), self.labels[index]


class ClassBalancedSampler:
    """Draw indices with probability inversely proportional to their class size.

    Every class is equally likely per draw, so rare individuals are seen as often as common
    ones. With ``groups`` (the species of each sample) every group is equally likely first and
    every class within it next, so a species with 300 individuals does not take 300 of every
    375 draws from one with 24. Draws are with replacement and deterministic given
    ``(seed, epoch)``, which makes a resumed run see the same batches as an uninterrupted one.
    Under DDP each rank takes every ``world_size``-th draw.

    Args:
        labels: class index per sample.
        num_samples: draws per epoch (default: number of samples).
        seed: base seed.
        rank: this process's rank.
        world_size: number of processes.
        groups: optional group (species) per sample.
    """

    def __init__(
        self,
        labels: Sequence[int],
        num_samples: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        groups: Sequence[str] | None = None,
    ) -> None:
        labels_array = np.asarray(labels)
        counts = Counter(labels_array.tolist())
        weights = np.array([1.0 / counts[label] for label in labels_array.tolist()])
        if groups is not None:
            classes_per_group: dict[str, set[int]] = {}
            for label, group in zip(labels_array.tolist(), groups, strict=True):
                classes_per_group.setdefault(group, set()).add(label)
            weights /= np.array([len(classes_per_group[group]) for group in groups])
        self.probabilities = weights / weights.sum()
        self.num_samples = int(num_samples or len(labels_array))
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draws :meth:`__iter__` yields."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        draws = rng.choice(len(self.probabilities), size=self.num_samples, p=self.probabilities)
        return iter(draws[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world_size))
