"""``make demo``: set up everything and run the app with demo data; Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import BaseCommand, call_command

from catalogue.models import Species
from catalogue.roles import ADMIN, EXPERT, VOLUNTEER, user_role_set
from catalogue.services.imports import dataset_plan
from identification.services.pipeline import dataset_ingest, species_register
from wildweb.celery import WORKER_GROUPS, WORKER_NICENESS, beat_command, worker_command
from wildweb.processes import processes_supervise

# (folder under the datasets directory, species name, sensitive location?)
DEMO_SPECIES = [("chimp_faces_demo", "Chimpanzee", True), ("fs48_fish", "Goldfish", False)]
DEMO_INDIVIDUALS = 5
DEMO_IMAGES_PER_INDIVIDUAL = 4


class Command(BaseCommand):
    help = "Migrate, create demo accounts and data, then run the workers, beat and the web server."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--no-serve", action="store_true", help="Set up only; do not serve.")

    def handle(self, *args: object, addr: str, no_serve: bool, **options: object) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        accounts = self._accounts()
        self._demo_data()
        self.stdout.write(self.style.SUCCESS("\nDemo accounts (saved in var/demo-accounts.json):"))
        for username, password in accounts.items():
            self.stdout.write(f"  {username:<10} password: {password}")
        if not no_serve:
            self._serve(addr)

    def _accounts(self) -> dict[str, str]:
        path = Path(settings.BASE_DIR) / "var" / "demo-accounts.json"
        saved = json.loads(path.read_text()) if path.exists() else {}
        for role in (ADMIN, EXPERT, VOLUNTEER):
            user, created = User.objects.get_or_create(username=role)
            if created or role not in saved:
                saved[role] = secrets.token_urlsafe(9)
                user.set_password(saved[role])
                user.is_superuser = role == ADMIN
                user.save()
            user_role_set(user=user, role=role)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(saved, indent=2))
        return saved

    def _demo_data(self) -> None:
        root = self._datasets_dir()
        if root is None:
            self.stdout.write(
                self.style.WARNING(
                    "No demo photos found. Put the shared datasets beside this checkout "
                    "(../shared/datasets) or set WILDWEB_DEMO_DATA to a folder holding "
                    + ", ".join(folder for folder, _, _ in DEMO_SPECIES)
                    + " (each with metadata.csv); the app runs without them."
                )
            )
            return
        for folder, name, sensitive in DEMO_SPECIES:
            metadata = root / folder / "metadata.csv"
            if not metadata.exists():
                continue
            species = Species.objects.filter(name=name).first() or species_register(
                name=name, sensitive=sensitive
            )
            plan = dataset_plan(
                metadata_csv=metadata,
                species=species,
                max_individuals=DEMO_INDIVIDUALS,
                images_per_individual=DEMO_IMAGES_PER_INDIVIDUAL,
            )
            result = dataset_ingest(plan=plan)
            self.stdout.write(
                f"{name}: {len(plan.rows)} demo photos, "
                f"{len(result.annotations)} new, {result.duplicates_skipped} already there"
            )

    @staticmethod
    def _datasets_dir() -> Path | None:
        candidates = [
            os.environ.get("WILDWEB_DEMO_DATA"),
            str(Path(settings.BASE_DIR).parent / "shared" / "datasets"),
        ]
        for candidate in candidates:
            if candidate and Path(candidate).is_dir():
                return Path(candidate)
        return None

    def _serve(self, addr: str) -> None:
        var = Path(settings.BASE_DIR) / "var"
        commands = {
            "web": [
                sys.executable,
                str(Path(settings.BASE_DIR) / "manage.py"),
                "runserver",
                addr,
                "--noreload",
            ],
            **{
                f"worker-{group}": worker_command(
                    queues=queues, name=group, niceness=WORKER_NICENESS[group]
                )
                for group, queues in WORKER_GROUPS.items()
            },
            "beat": beat_command(schedule=var / "celerybeat-schedule"),
        }
        self.stdout.write(self.style.SUCCESS(f"\nWildweb is at http://{addr}/  (Ctrl-C stops it)"))
        self.stdout.write(
            "Workers: "
            + "; ".join(f"{group} ({queues})" for group, queues in WORKER_GROUPS.items())
            + "; beat runs the job sweep."
        )
        processes_supervise(commands, out=self.stdout)
        if settings.EMBEDDED_DATABASE:
            from wildweb.embedded import stop

            stop()  # only the servers this checkout started; data stays under var/
        self.stdout.write("Stopped.")
