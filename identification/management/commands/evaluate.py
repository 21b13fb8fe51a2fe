from __future__ import annotations

import json as _json

from django.core.management import BaseCommand

from identification.management.commands.identify import species_lookup
from identification.services.evaluation import RANKING_METHODS, species_evaluate


class Command(BaseCommand):
    help = (
        "Honest leave-one-out evaluation of a species' ranking (the query's own sighting is "
        "never in the gallery); default method: the species' own."
    )

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--species", required=True)
        parser.add_argument("--method", choices=RANKING_METHODS, default=None)
        parser.add_argument("--limit", type=int, default=None, help="At most this many queries.")
        parser.add_argument(
            "--open-set",
            action="store_true",
            help="Also rank each query as a new animal (its individual removed): BAKS, BAUS.",
        )
        parser.add_argument("--json", action="store_true")

    def handle(
        self,
        *args: object,
        species: str,
        method: str | None,
        limit: int | None,
        open_set: bool,
        json: bool,
        **options: object,
    ) -> None:
        report = species_evaluate(
            species=species_lookup(species), method=method, limit=limit, open_set=open_set
        )
        if json:
            self.stdout.write(_json.dumps(report, indent=2))
        else:
            self.stdout.write(" ".join(f"{k}={v}" for k, v in report.items()))
