"""``manage.py compact_vectors``: store PCA-whitened vectors (256-d) for a model version."""

from __future__ import annotations

from django.core.management import BaseCommand, CommandError
from django.db.models import Count

from identification.models import ModelVersion, SpeciesModel
from identification.services.compaction import (
    COMPACT_DIM,
    compact_version_adopt,
    compact_version_create,
)
from wildweb.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Fit PCA-whitening on every stored vector of a model version (default: the one most "
        "species rank with), save it as a compacted version and re-embed each species that "
        "uses the source under it; each species switches once its last vector is stored."
    )

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--model-version", help="Name of the model version to compact.")
        parser.add_argument("--dim", type=int, default=COMPACT_DIM)

    def handle(self, *args: object, model_version: str | None, dim: int, **options: object) -> None:
        source = self._source(model_version)
        try:
            compacted = compact_version_create(source=source, dim=dim)
            species = compact_version_adopt(version=compacted)
        except ServiceError as error:
            raise CommandError(error.message) from None
        names = ", ".join(s.name for s in species) or "none"
        self.stdout.write(
            f"{compacted.name}: {dim}-d, fitted on {compacted.metrics['fitted_on_vectors']} "
            f"vectors; re-embedding: {names}."
        )

    def _source(self, name: str | None) -> ModelVersion:
        if name:
            source = ModelVersion.objects.filter(name=name).first()
            if source is None:
                raise CommandError(f"No model version is called {name!r}.")
            return source
        most_used = (
            SpeciesModel.objects.filter(model_version__compaction="")
            .values("model_version")
            .annotate(species=Count("species"))
            .order_by("-species")
            .first()
        )
        if most_used is None:
            raise CommandError("No species ranks with an uncompacted model version yet.")
        return ModelVersion.objects.get(pk=most_used["model_version"])
