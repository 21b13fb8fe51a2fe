"""``manage.py import_dataset PATH --species NAME``: an import job, run in this process.

The same job as a browser upload (:mod:`training.services.imports`): the dry run, then every
row stored or none, then (``--wait``) the workers embedding the species.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.core.management import BaseCommand, CommandError
from tqdm import tqdm

from catalogue.models import Species
from catalogue.services.imports import FORMATS, ImportResult
from identification.selectors.species_models import embedding_progress
from identification.services.models import species_model_setting
from training.models import DatasetImport
from training.services import imports


class Command(BaseCommand):
    help = (
        "Import labelled photos (shared CSV, COCO/CCT JSON, MegaDetector JSON, or a ZIP "
        "holding one of these with its photos or one folder per individual) into a species, "
        "creating it if missing. Every row is imported or none; identities become "
        "individuals; embeddings are queued."
    )

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("path", type=Path)
        parser.add_argument("--species", required=True)
        parser.add_argument(
            "--format", choices=FORMATS, default=None, help="Default: guessed from the file."
        )
        parser.add_argument("--dry-run", action="store_true", help="Report only; write nothing.")
        parser.add_argument("--max-individuals", type=int, default=None)
        parser.add_argument("--images-per-individual", type=int, default=None)
        parser.add_argument(
            "--image-root",
            type=Path,
            default=None,
            help="Folder relative image paths of a JSON file start from.",
        )
        parser.add_argument(
            "--sensitive",
            action="store_true",
            help="Mark a newly created species as having sensitive locations.",
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--queue",
            action="store_true",
            help="Hand the import to the bulk workers instead of running it here; follow it "
            "on its page.",
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Then follow the workers embedding the species (a progress bar) until done.",
        )

    def handle(self, *args: object, **options: object) -> None:
        job = imports.dataset_import_local(
            path=options["path"],
            species_name=str(options["species"]).strip(),
            sensitive=bool(options["sensitive"]),
            options={
                "file_format": options["format"],
                "max_individuals": options["max_individuals"],
                "images_per_individual": options["images_per_individual"],
                "image_root": str(options["image_root"]) if options["image_root"] else None,
            },
        )
        if options["queue"]:
            imports.dataset_import_send(job=job)
            self.stdout.write(f"Import #{job.pk} is queued for the bulk workers.")
            return
        species_existed = job.species_id is not None
        job = imports.dataset_import_execute(import_id=job.pk)  # the dry run
        report = {
            "import_id": job.pk,
            "species": job.species_name,
            "species_created": False,
            "dry_run": options["dry_run"],
            "plan": job.report,
        }
        if job.state == DatasetImport.State.FAILED:
            if job.report:
                self._print(report, options["json"])
            raise CommandError(job.error)
        if options["dry_run"]:
            imports.dataset_import_discard(job=job)
            self._print(report, options["json"])
            return
        job = imports.dataset_import_confirm(job=job, send=False)
        with tqdm(total=job.rows_total, desc="storing", unit="photo") as bar:
            job = imports.dataset_import_execute(import_id=job.pk, progress=bar.update)
        if job.state == DatasetImport.State.FAILED:
            raise CommandError(job.error)
        report["species_created"] = not species_existed
        report["result"] = {k: job.result[k] for k in ImportResult().report()}
        if options["wait"]:
            self._embedding_follow(job.species)
            imports.dataset_import_finish_check(job=job)
        self._print(report, options["json"])

    def _embedding_follow(self, species: Species) -> None:
        version_id = species_model_setting(species=species).model_version_id
        with tqdm(desc="embedding", unit="photo") as bar:
            while True:
                progress = embedding_progress(species_id=species.pk, version_id=version_id)
                bar.total, bar.n = progress["total"], progress["done"] + progress["failed"]
                bar.set_postfix(failed=progress["failed"])
                bar.refresh()
                if bar.n >= progress["total"]:
                    return
                time.sleep(1)

    def _print(self, report: dict, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(report, indent=2, default=str))
            return
        plan = report["plan"]
        self.stdout.write(
            f"{plan['species']}: {plan['images']} photos, {plan['annotations']} "
            f"animals, {plan['new_individuals']} new and "
            f"{plan['existing_individuals']} existing individuals, "
            f"{plan['awaiting_identification']} awaiting identification."
        )
        for error in plan["errors"]:
            self.stderr.write(f"  {error}")
        if "result" in report:
            self.stdout.write(self.style.SUCCESS(f"Imported: {report['result']}"))
