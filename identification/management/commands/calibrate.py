from __future__ import annotations

import json as _json

from django.core.management import BaseCommand, CommandError

from identification.management.commands.identify import species_lookup
from identification.models import SpeciesModel
from identification.services.evaluation import species_calibrate
from wildweb.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Fit a species' calibration on its confirmed photos, adopt a fusion only if it beats "
        "the best single method, and choose its 'probably new' threshold (its BAKS and BAUS "
        "measured on held-out individuals)."
    )

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--species", required=True)
        parser.add_argument("--queries", type=int, default=200)
        parser.add_argument(
            "--local-method",
            choices=SpeciesModel.LocalMethod.values,
            help="Switch the species' keypoint matcher first (default: keep its own).",
        )
        parser.add_argument("--json", action="store_true")

    def handle(
        self,
        *args: object,
        species: str,
        queries: int,
        local_method: str | None,
        json: bool,
        **options: object,
    ) -> None:
        try:
            report = species_calibrate(
                species=species_lookup(species), queries=queries, local_method=local_method
            )
        except ServiceError as error:
            raise CommandError(error.message) from None
        if json:
            self.stdout.write(_json.dumps(report, indent=2))
            return
        open_set = report["open_set"]
        held_out = (
            f"held-out BAKS {open_set['BAKS']:.3f}, BAUS {open_set['BAUS']:.3f}, "
            f"geometric mean {open_set['geometric_mean']:.3f}"
            if open_set["folds"]
            else "BAKS and BAUS not measured: too few individuals to hold some out"
        )
        self.stdout.write(
            f"{report['species']}: ranks with {report['ranking_method']} "
            f"({report['decision']}); probably-new threshold {open_set['threshold']:.3f} "
            f"({held_out})"
        )
