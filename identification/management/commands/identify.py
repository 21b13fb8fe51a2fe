from __future__ import annotations

import json as _json
from pathlib import Path

from django.core.management import BaseCommand, CommandError
from PIL import Image

from catalogue.models import Species
from identification.services.evaluation import RANKING_METHODS, image_identify


class Command(BaseCommand):
    help = "Rank the known individuals of a species for one photo (nothing is stored)."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("image", type=Path)
        parser.add_argument("--species", required=True, help="Species name or slug.")
        parser.add_argument("--method", choices=RANKING_METHODS, default=None)
        parser.add_argument("--top", type=int, default=10)
        parser.add_argument("--json", action="store_true")

    def handle(
        self,
        *args: object,
        image: Path,
        species: str,
        method: str | None,
        top: int,
        json: bool,
        **options: object,
    ) -> None:
        found = species_lookup(species)
        try:
            with Image.open(image) as photo:
                ranked = image_identify(image=photo, species=found, method=method, top=top)
        except OSError as error:
            raise CommandError(f"Cannot read {image}: {error}") from None
        if json:
            self.stdout.write(_json.dumps({"species": found.name, "candidates": ranked}, indent=2))
            return
        for row in ranked:
            self.stdout.write(
                f"{row['rank']:>3}  {row['code']:<20} score {row['score']:.3f}  "
                f"probability {row['fused_score']:.3f}  "
                f"cos {row['embedding_score']:.3f}  inliers {row['inlier_count']}"
            )


def species_lookup(name: str) -> Species:
    found = (
        Species.objects.filter(name__iexact=name).first()
        or Species.objects.filter(slug=name).first()
    )
    if found is None:
        raise CommandError(
            f"No species {name!r}. Known: "
            + ", ".join(Species.objects.values_list("name", flat=True))
        )
    return found
