"""``manage.py finetune --species NAME``: fine-tune, report held-out top-1 before and after."""

from __future__ import annotations

import json
import time

from django.core.management import BaseCommand, CommandError

from catalogue.models import Species
from training.models import TrainingRun
from wildweb.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Start a training run for a species. With --wait it trains in this process (the same "
        "service a worker runs) and prints the evaluation report."
    )

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--species", required=True)
        parser.add_argument(
            "--mode", choices=TrainingRun.Mode.values, default=TrainingRun.Mode.WITH_ORIGINAL_DATA
        )
        parser.add_argument("--engine-mode", choices=["cached", "full"], default="")
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--image-size", type=int)
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--samples-per-epoch", type=int)
        parser.add_argument("--seed", type=int)
        parser.add_argument(
            "--hyperparameter",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="Any other hyperparameter, e.g. validation_fraction=0.6 (repeatable).",
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Train here and wait for the report (no worker needed).",
        )
        parser.add_argument(
            "--promote",
            action="store_true",
            help="Promote when done and re-embed the species (needs --wait).",
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: object, **options: object) -> None:
        from training.services.runs import training_run_execute, training_run_start

        species = Species.objects.filter(name__iexact=str(options["species"]).strip()).first()
        if species is None:
            raise CommandError(f"No species {options['species']!r}.")
        if options["promote"] and not options["wait"]:
            raise CommandError("--promote needs --wait.")
        given: dict[str, object] = {}
        for item in options["hyperparameter"]:
            name, separator, value = str(item).partition("=")
            if not separator:
                raise CommandError(f"--hyperparameter {item!r}: expected NAME=VALUE.")
            given[name.strip()] = value.strip()
        given.update(
            {
                name: options[name]
                for name in ("epochs", "image_size", "batch_size", "samples_per_epoch", "seed")
                if options[name] is not None
            }
        )
        started = time.monotonic()
        try:
            run = training_run_start(
                species=species,
                mode=options["mode"],
                engine_mode=options["engine_mode"],
                hyperparameters=given,
                dispatch=not options["wait"],
            )
        except ServiceError as error:
            raise CommandError(error.message) from None
        if not options["wait"]:
            self._print({"run": run.pk, "status": run.status}, options["json"])
            return
        run = training_run_execute(run_id=run.pk)
        if run is None or run.status != TrainingRun.Status.SUCCEEDED:
            status = run.status if run else "not started (another run of the species is running)"
            raise CommandError(f"Run ended {status}: {run.error if run else ''}")
        from training.selectors import promotion_warnings

        output = {
            "run": run.pk,
            "status": run.status,
            **run.report,
            "warnings": promotion_warnings(report=run.report),
            "seconds_to_report": round(time.monotonic() - started, 1),
        }
        if options["promote"]:
            output["promotion"] = self._promote(run)
            output["seconds_to_promoted"] = round(time.monotonic() - started, 1)
        self._print(output, options["json"])

    def _promote(self, run: TrainingRun) -> dict:
        """Promote and re-embed in this process, then switch (the services a worker runs)."""
        from identification.models import EmbeddingJob, SpeciesModel
        from identification.services.embedding import EMBED_BATCH_SIZE
        from identification.services.embedding_run import embedding_jobs_run
        from identification.services.model_switch import species_model_switch_if_ready
        from training.services.promotion import model_promote

        model_promote(run=run, confirmed=True)  # --promote is the admin's explicit choice
        setting = SpeciesModel.objects.get(species=run.species)
        job_ids = list(
            EmbeddingJob.objects.filter(
                model_version=setting.pending_version, state=EmbeddingJob.State.QUEUED
            ).values_list("pk", flat=True)
        )
        for start in range(0, len(job_ids), EMBED_BATCH_SIZE):
            embedding_jobs_run(job_ids=job_ids[start : start + EMBED_BATCH_SIZE])
        switched = species_model_switch_if_ready(species=run.species)
        setting.refresh_from_db()
        return {
            "switched": switched,
            "model_version": setting.model_version.name,
            "previous_version": setting.previous_version.name if setting.previous_version else None,
            "ranking_method": setting.ranking_method,
            "re_embedded": len(job_ids),
        }

    def _print(self, payload: dict, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(payload, indent=2, default=str))
            return
        if "before" in payload:
            self.stdout.write(
                f"Run {payload['run']}: held-out top-1 "
                f"{payload['before']['top1']:.3f} → {payload['after']['top1']:.3f} "
                f"(zero-shot {payload['zero_shot']['top1']:.3f}); recommended "
                f"ranking: {payload['recommended_ranking_method']}"
            )
        else:
            self.stdout.write(f"Run {payload['run']} {payload['status']}.")
