"""Queues under load: upload → candidates while 20 volunteers flood the app, during a training
run, and how long a batch takes to come back after ``kill -9`` of its worker.

Everything runs on this machine over loopback, in a fresh database on the embedded (or
configured) Postgres, with the processes ``make demo`` runs: gunicorn, the ``interactive``
(identify,default), ``bulk`` and ``training`` workers, and beat.

1. Gallery: 10 chimpanzees x 4 photos imported and embedded in-process (zero-shot model).
2. Load: ``--uploaders`` volunteers, each logged in, POST one-photo sightings to
   ``/api/sightings/`` back to back for ``--load-seconds`` (a bounded loop). Meanwhile a probe
   volunteer submits a real chimp photo every ``--probe-every`` seconds; each probe is timed
   from the start of its POST to "Candidates ready".
3. Training: the load's leftover backlog is dropped; a real (small, cached) fine-tune holds the
   training worker while 5 probes are submitted one after another.
4. Crash: 32 goldfish photos are imported (bulk queue); once a job is running, the bulk worker
   and its pool child get SIGKILL and a new bulk worker starts (as a process supervisor
   would); timed from the kill to the last photo embedded.

``probe_p95_s`` in the output is the load phase's probe p95. ``--layout fifo`` measures the
identify queue first come, first served (``FAIR_QUEUES`` empty), ``fair`` (the default) round
robin across uploaders.

Usage:
    nice -n 10 .venv/bin/python benchmarks/jobs/queues.py --out benchmarks/jobs/queues.json
    nice -n 10 .venv/bin/python benchmarks/jobs/queues.py --layout fifo --uploaders 5 \
        --load-seconds 15 --load-only --out /tmp/fifo.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks" / "identification"))
sys.path.insert(0, str(REPO / "benchmarks" / "jobs"))
from stack import Stack  # noqa: E402 (a sibling module, found through the path above)

DATASETS = REPO.parent / "shared" / "datasets"
PASSWORD = "bench-password-123"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploaders", type=int, default=20)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--probe-every", type=float, default=3)
    parser.add_argument("--database", default="wildweb_bench_jobs")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--layout",
        choices=("fair", "fifo"),
        default="fair",
        help="fair: the identify queue served round robin across uploaders (FAIR_QUEUES, the "
        "default); fifo: first come, first served, as before",
    )
    parser.add_argument("--load-only", action="store_true", help="skip the training and crash")
    args = parser.parse_args()
    os.environ["FAIR_QUEUES"] = "identify" if args.layout == "fair" else ""

    from search import _use_database

    _use_database(args.database)
    # The stack serves plain HTTP on loopback: with DEBUG off, Django would redirect every
    # request to HTTPS, refuse the 127.0.0.1 host and mark the cookies Secure (never sent back).
    os.environ["DEBUG"] = "1"
    os.environ["DB_STATEMENT_TIMEOUT_MS"] = "30000"
    os.environ["CELERY_KEY_PREFIX"] = f"wildweb-bench-jobs-{os.getpid()}:"
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "1"  # the gallery is embedded in-process
    os.environ["JOBS_SWEEP_SECONDS"] = "10"
    media = Path(tempfile.mkdtemp(prefix="wildweb-bench-jobs-"))
    os.environ["MEDIA_ROOT"] = str(media)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    result: dict = {
        "layout": args.layout,
        "interactive_pending_sightings": settings.INTERACTIVE_PENDING_SIGHTINGS,
        "uploaders": args.uploaders,
        "load_seconds": args.load_seconds,
    }
    chimp, probes = _gallery()
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
    from wildweb.celery import app

    app.conf.task_always_eager = False
    stack = Stack(media)
    try:
        base = stack.start()
        result["load"] = _load_phase(base, chimp, probes, args)
        result["probe_p95_s"] = result["load"]["probe_upload_to_candidates"]["p95_s"]
        print(json.dumps(result["load"], indent=2), flush=True)
        _drop_backlog()
        if not args.load_only:
            result["training"] = _training_phase(base, chimp, probes[-5:])
            print(json.dumps(result["training"], indent=2), flush=True)
            result["crash"] = _crash_phase(stack)
            print(json.dumps(result["crash"], indent=2), flush=True)
    finally:
        stack.stop()
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def _gallery():  # noqa: ANN202
    from catalogue.services.imports import dataset_plan
    from identification.services.pipeline import dataset_ingest, species_register

    chimp = species_register(name="Chimpanzee")
    metadata = DATASETS / "chimp_faces_demo" / "metadata.csv"
    plan = dataset_plan(metadata_csv=metadata, species=chimp, images_per_individual=4)
    dataset_ingest(plan=plan)
    imported = {Path(row.path).name for row in plan.rows}
    probes = sorted(
        p for p in (metadata.parent / "images").rglob("*.jpg") if p.name not in imported
    )
    random.Random(0).shuffle(probes)
    print(f"gallery: {len(plan.rows)} photos; {len(probes)} photos left for probes", flush=True)
    return chimp, probes


def _session(base: str, username: str):  # noqa: ANN202
    import requests
    from django.contrib.auth.models import User

    from catalogue.roles import VOLUNTEER, user_role_set

    user, _ = User.objects.get_or_create(username=username)
    user.set_password(PASSWORD)
    user.save()
    user_role_set(user=user, role=VOLUNTEER)
    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=60)
    session.post(
        f"{base}/accounts/login/",
        timeout=60,
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
    )
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
    return session


def _post(session, base: str, species_slug: str, name: str, data: bytes) -> tuple[int, int | None]:  # noqa: ANN001
    response = session.post(
        f"{base}/api/sightings/",
        timeout=120,
        data={"species": species_slug, "observed_at": "2025-06-01T08:00:00Z"},
        files={"photos": (name, data, "image/jpeg")},
    )
    sighting = (response.json().get("sighting") or {}) if response.status_code == 201 else {}
    return response.status_code, sighting.get("id")


def _noise_jpeg(rng: random.Random) -> bytes:
    from PIL import Image

    image = Image.frombytes("RGB", (96, 72), rng.randbytes(96 * 72 * 3))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def _ready_seconds(encounter_ids: dict[int, float], timeout: float) -> dict[int, float]:
    """Seconds from each submission to "Candidates ready" (or failed), polling the database."""
    done: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(encounter_ids) and time.monotonic() < deadline:
        _note_ready(encounter_ids, done)
        time.sleep(0.1)
    return done


def _note_ready(encounter_ids: dict[int, float], done: dict[int, float]) -> None:
    """Adds to ``done`` the seconds since submission of each sighting now past processing."""
    from catalogue.models import Encounter

    waiting = [pk for pk in encounter_ids if pk not in done]
    for pk in (
        Encounter.objects.filter(pk__in=waiting)
        .exclude(status=Encounter.Status.PROCESSING)
        .values_list("pk", flat=True)
    ):
        done[pk] = time.monotonic() - encounter_ids[pk]


def _summary(seconds: list[float], submitted: int) -> dict:
    ordered = sorted(seconds)
    return {
        "submitted": submitted,
        "ready": len(ordered),
        "p50_s": round(statistics.median(ordered), 2) if ordered else None,
        "p95_s": round(ordered[max(0, int(round(0.95 * len(ordered))) - 1)], 2)
        if ordered
        else None,
        "max_s": round(ordered[-1], 2) if ordered else None,
    }


def _load_phase(base: str, chimp, probes: list[Path], args) -> dict:  # noqa: ANN001
    from catalogue.models import Encounter

    sessions = [_session(base, f"uploader{i}") for i in range(args.uploaders)]
    # Each probe is a different volunteer's first sighting: the case the identify queue is for
    # (one volunteer's sightings beyond INTERACTIVE_PENDING_SIGHTINGS go to bulk).
    probe_count = int(args.load_seconds // args.probe_every)
    probe_sessions = [_session(base, f"probe{i}") for i in range(probe_count)]
    # Warm-up, not counted: the interactive worker loads the model on its first sighting.
    warm = _session(base, "warm-up")
    started = time.monotonic()
    _, pk = _post(warm, base, chimp.slug, probes[-6].name, probes[-6].read_bytes())
    warm_up_s = _ready_seconds({pk: started}, timeout=300).get(pk)
    statuses: list[int] = []
    load_sightings: dict[int, float] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + args.load_seconds

    def uploader(index: int) -> None:
        rng = random.Random(index)
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                code, pk = _post(sessions[index], base, chimp.slug, "noise.jpg", _noise_jpeg(rng))
            except Exception:  # a refused or timed-out request counts as an error
                code, pk = -1, None
            with lock:
                statuses.append(code)
                if pk:
                    load_sightings[pk] = started

    probe_sightings: dict[int, float] = {}
    probe_errors: list[int] = []
    probe_ready: dict[int, float] = {}
    load_over = threading.Event()

    def watcher() -> None:
        """Notes each probe ready while the load still runs (polling only after the load
        would time every probe to the load's end)."""
        from django.db import connection

        deadline = None
        try:
            while True:
                with lock:
                    submitted = dict(probe_sightings)
                _note_ready(submitted, probe_ready)
                if load_over.is_set():
                    deadline = deadline or time.monotonic() + 240
                    if len(probe_ready) == len(probe_sightings) or time.monotonic() > deadline:
                        return
                time.sleep(0.1)
        finally:
            connection.close()

    def prober() -> None:
        time.sleep(2)
        for photo, session in zip(probes, probe_sessions):
            if time.monotonic() + args.probe_every > stop_at:
                return
            started = time.monotonic()
            try:
                code, pk = _post(session, base, chimp.slug, photo.name, photo.read_bytes())
            except Exception:
                code, pk = -1, None
            if pk:
                with lock:
                    probe_sightings[pk] = started
            else:
                probe_errors.append(code)
            time.sleep(max(0, args.probe_every - (time.monotonic() - started)))

    threads = [threading.Thread(target=uploader, args=(i,)) for i in range(args.uploaders)]
    threads.append(threading.Thread(target=prober))
    watching = threading.Thread(target=watcher)
    watching.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load_end = time.monotonic()
    load_over.set()
    watching.join()
    load_ready_by_end = (
        Encounter.objects.filter(pk__in=list(load_sightings))
        .exclude(status=Encounter.Status.PROCESSING)
        .count()
    )
    errors = [code for code in statuses if code != 201]
    return {
        "warm_up_sighting_s": round(warm_up_s, 1) if warm_up_s else None,
        "uploads": len(statuses),
        "upload_errors": len(errors),
        "error_codes": sorted(set(errors)),
        "probe_upload_errors": probe_errors,
        "probe_upload_to_candidates": _summary(list(probe_ready.values()), len(probe_sightings)),
        "load_sightings_ready_when_probes_done": load_ready_by_end,
        "probes_done_s_after_load_end": round(time.monotonic() - load_end, 1),
    }


def _drop_backlog() -> None:
    """End the load's leftover work so the next phase measures only itself."""
    from identification.models import EmbeddingJob, Identification
    from wildweb.celery import app

    app.control.purge()
    reason = "benchmark: the load's backlog was dropped"
    EmbeddingJob.objects.filter(state__in=["queued", "running"]).update(
        state="failed", error=reason
    )
    Identification.objects.filter(state__in=["queued", "running"]).update(
        state="failed", error=reason
    )
    time.sleep(5)  # let running tasks finish their current batch


def _training_phase(base: str, chimp, probes: list[Path]) -> dict:  # noqa: ANN001
    from training.models import TrainingRun
    from training.services.runs import training_run_cancel, training_run_start

    run = training_run_start(
        species=chimp,
        engine_mode="cached",
        mode="new-data-only",
        hyperparameters={
            "image_size": 96,
            "epochs": 400,
            "samples_per_epoch": 64,
            "batch_size": 8,
            "cached_views": 2,
        },
    )
    deadline = time.monotonic() + 300
    while TrainingRun.objects.get(pk=run.pk).epoch < 1:
        if time.monotonic() > deadline:
            raise RuntimeError(TrainingRun.objects.get(pk=run.pk).log)
        time.sleep(0.5)
    session = _session(base, "trainer-time-probe")
    latencies = []
    for photo in probes:
        started = time.monotonic()
        _, pk = _post(session, base, chimp.slug, photo.name, photo.read_bytes())
        latencies += list(_ready_seconds({pk: started}, timeout=300).values())
    run.refresh_from_db()
    still_running = run.status == TrainingRun.Status.RUNNING
    if still_running:
        training_run_cancel(run=run)
    return {
        "training_run_still_running_after_probes": still_running,
        "epoch_reached": run.epoch,
        "probe_upload_to_candidates": _summary(latencies, len(probes)),
    }


def _crash_phase(stack: Stack) -> dict:
    import psutil

    from catalogue.services.imports import dataset_plan
    from identification.models import EmbeddingJob
    from identification.services.pipeline import dataset_ingest, species_register

    fish = species_register(name="Goldfish")
    plan = dataset_plan(
        metadata_csv=DATASETS / "fs48_fish" / "metadata.csv",
        species=fish,
        max_individuals=8,
        images_per_individual=4,
    )
    dataset_ingest(plan=plan)
    jobs = EmbeddingJob.objects.filter(annotation__species=fish)
    deadline = time.monotonic() + 120
    while not jobs.filter(state="running").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("no job started")
        time.sleep(0.05)
    worker = stack.processes["worker-bulk"]
    main = psutil.Process(worker.pid)
    for process in [*main.children(recursive=True), main]:
        process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    worker.wait()
    unfinished_at_kill = jobs.exclude(state="done").count()
    stack.worker_start("bulk")  # what a supervisor (compose restart, systemd) does
    while jobs.exclude(state="done").exists():
        if time.monotonic() - killed_at > 600:
            break
        time.sleep(0.2)
    return {
        "photos": jobs.count(),
        "unfinished_at_kill": unfinished_at_kill,
        "kill_to_all_embedded_s": round(time.monotonic() - killed_at, 1),
        "failed": jobs.filter(state="failed").count(),
    }


if __name__ == "__main__":
    main()
