"""``manage.py import_dataset PATH --species NAME``: dry-run report, then import."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from django.core.management import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from catalogue.models import Species
from catalogue.services.imports import (
    FORMATS,
    dataset_file_plan,
    import_folder_remove,
)
from identification.selectors.species_models import embedding_progress
from identification.services.models import species_model_setting
from identification.services.pipeline import dataset_ingest, species_register
from wildweb.errors import ServiceError


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
            "--wait",
            action="store_true",
            help="Then follow the workers embedding the species (a progress bar) until done.",
        )

    def handle(self, *args: object, **options: object) -> None:
        path: Path = options["path"]
        name = str(options["species"]).strip()
        species = Species.objects.filter(name__iexact=name).first()
        try:
            is_zip = options["format"] == "zip" or path.suffix.lower() == ".zip"
            extract_dir = Path(tempfile.mkdtemp(prefix="wildweb-import-")) if is_zip else None
            try:
                report = self._import(path, species, name, extract_dir, options)
            finally:
                if extract_dir is not None:
                    import_folder_remove(path=extract_dir)
        except ServiceError as error:
            raise CommandError(error.message) from None
        self._print(report, options["json"])

    def _import(
        self,
        path: Path,
        species: Species | None,
        name: str,
        extract_dir: Path | None,
        options: dict,
    ) -> dict:
        # A missing species is created only once the plan is clean: a rejected file leaves
        # nothing behind.
        plan = dataset_file_plan(
            path=path,
            species=species or Species(name=name),
            file_format=options["format"],
            max_individuals=options["max_individuals"],
            images_per_individual=options["images_per_individual"],
            image_root=options["image_root"],
            extract_dir=extract_dir,
            # An admin's own folder: its symbolic links (images/ on another disk) are trusted.
            follow_links=extract_dir is None,
        )
        report = {
            "species": name,
            "species_created": False,
            "dry_run": options["dry_run"],
            "plan": plan.report(),
        }
        if plan.errors:
            self._print(report, options["json"])
            raise CommandError(f"{len(plan.errors)} invalid entries; nothing was imported.")
        if not options["dry_run"]:
            # A species created here goes with the import: a failing import leaves neither.
            with transaction.atomic():
                if species is None:
                    plan.species = species_register(name=name, sensitive=bool(options["sensitive"]))
                    report["species_created"] = True
                with tqdm(total=len(plan.rows), desc="storing", unit="photo") as bar:
                    report["result"] = dataset_ingest(plan=plan, progress=bar.update).report()
            if options["wait"]:
                self._embedding_follow(plan.species)
        return report

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
