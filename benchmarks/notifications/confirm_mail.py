"""An expert's confirm with the mail server up, refusing, or silent, side by side.

The confirm only queues its e-mail (``notifications.tasks``), so the mail server's state must
not show in the time the expert waits. Rounds alternate the three states; each round is one
POST of the review page's "same individual" action through Django's test client, with the
reporter asking for e-mails. No worker runs: the messages wait in Redis (under this script's
own key prefix, purged at the end).

Usage (own database on the embedded Postgres; dropped first):
    .venv/bin/python benchmarks/notifications/confirm_mail.py --rounds 40
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.identification.search import _use_database  # noqa: E402


class _Inbox:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802
        self.count += 1
        return "250 OK"


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--database", default="wildweb_bench_mail")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    _use_database(args.database)
    os.environ.update(ALLOWED_HOSTS="testserver", SECURE_SSL_REDIRECT="0", EMAIL_USE_TLS="0")
    import django

    django.setup()
    from aiosmtpd.controller import Controller
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import override_settings
    from django.urls import reverse

    from catalogue.models import Encounter
    from identification.models import Identification
    from notifications.models import NotificationPreference
    from tests.factories import (
        AnnotationFactory,
        EncounterFactory,
        ImageFactory,
        IndividualFactory,
        UserFactory,
    )
    from wildweb.celery import app

    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "global_keyprefix": "wildweb-bench-mail:",
    }
    call_command("migrate", verbosity=0)

    up_port, refused_port, silent_port = _port(), _port(), _port()
    server = Controller(_Inbox(), hostname="127.0.0.1", port=up_port)
    server.start()
    silent = socket.socket()  # accepts connections (the kernel does) and never says a word
    silent.bind(("127.0.0.1", silent_port))
    silent.listen(1000)
    ports = {"up": up_port, "refused": refused_port, "silent": silent_port}

    expert = UserFactory(role="expert")
    client = Client()
    client.force_login(expert)
    timings: dict[str, list[float]] = {state: [] for state in ports}
    for round_index in range(args.rounds + 1):
        for state, port in ports.items():
            reporter = UserFactory(role="volunteer", email="r@example.org")
            NotificationPreference.objects.create(user=reporter, email_identified=True)
            encounter = EncounterFactory(
                submitted_by=reporter, status=Encounter.Status.AWAITING_REVIEW
            )
            annotation = AnnotationFactory(image=ImageFactory(encounter=encounter))
            Identification.objects.create(annotation=annotation, state=Identification.State.READY)
            known = IndividualFactory(species=annotation.species)
            with override_settings(
                EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                EMAIL_HOST="127.0.0.1",
                EMAIL_PORT=port,
            ):
                started = time.perf_counter()
                response = client.post(
                    reverse("review-act", args=[annotation.pk]),
                    {"action": "same", "individual": known.pk, "expected_individual": ""},
                )
                elapsed = time.perf_counter() - started
            assert response.status_code == 302, response.status_code
            if round_index:  # the first round warms caches
                timings[state].append(elapsed)
    server.stop()
    silent.close()
    app.control.purge()

    def summary(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "n": len(values),
            "p50_s": round(statistics.median(values), 4),
            "p95_s": round(ordered[int(0.95 * (len(ordered) - 1))], 4),
            "mean_s": round(statistics.fmean(values), 4),
        }

    result = {state: summary(values) for state, values in timings.items()}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
