"""Expert pages under load: experts reviewing and volunteers following their sightings at once.

Everything runs on this machine over loopback, in a fresh database on the embedded (or
configured) Postgres, with gunicorn alone (``stack.WEB_WORKERS`` processes x
``stack.WEB_THREADS`` threads, DEBUG=0, the static manifest collected into a temporary
folder, SECURE_SSL_REDIRECT off as no TLS proxy is in front). No Celery worker runs: the tasks
the decisions queue wait in Redis and are purged at the end.

1. Catalogue (factories, no neural network): one species with ``--individuals`` individuals,
   each seen once; ``--volunteers`` volunteers, each with ``--awaiting`` sightings awaiting
   review (one or two photos of one animal, each ranked with ``--candidates`` candidates) and
   ``--identified`` identified ones; ``--experts`` experts. Everyone is signed in through a
   session stored in the database.
2. Load for ``--seconds`` (after ``--warm-up`` seconds not counted), one thread per person:
   an expert opens the review queue, one of its first 20 animals, and decides it (``same`` or
   ``reject`` on the first candidate, half each), pausing ``--think`` seconds (0.5x-1.5x)
   between requests; a volunteer polls "My sightings" (the htmx fragment) every ``--poll``
   seconds, opens one of their sightings each time, and every third time votes on an animal
   of the review queue (queue, animal, vote).
3. Per page: requests, p50/p95/p99 latency (ms), errors (a refused connection, a timeout or
   a 4xx/5xx answer), and the SQL queries the page asks for (once, in-process, through
   Django's test client and ``CaptureQueriesContext``).

Usage:
    .venv/bin/python benchmarks/jobs/pages.py --seconds 20 --out benchmarks/jobs/pages.json
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks" / "identification"))
sys.path.insert(0, str(REPO / "benchmarks" / "jobs"))
from stack import WEB_THREADS, WEB_WORKERS, Stack  # noqa: E402 (a sibling module)

# What each page answers when all is well.
EXPECTED_STATUS = {
    "review-queue": {200},
    "review-annotation": {200},
    "review-act (decide)": {302},
    "review-act (vote)": {302},
    "my-sightings (htmx)": {200},
    "sighting-detail": {200},
}
QUEUE_LINK = re.compile(r'href="/review/(\d+)/"')
OWN_SIGHTING_LINK = re.compile(r'href="/sightings/(\d+)/"')
FIRST_CANDIDATE = re.compile(
    r'name="individual" value="(\d+)">\s*'
    r'<input type="hidden" name="expected_individual" value="(\d*)">'
)


def parser_build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30, help="measured load (s)")
    parser.add_argument("--warm-up", type=float, default=5, help="load before measuring (s)")
    parser.add_argument("--experts", type=int, default=10)
    parser.add_argument("--volunteers", type=int, default=10)
    parser.add_argument("--individuals", type=int, default=300)
    parser.add_argument("--awaiting", type=int, default=12, help="per volunteer")
    parser.add_argument("--identified", type=int, default=8, help="per volunteer")
    parser.add_argument("--candidates", type=int, default=10, help="per photo")
    parser.add_argument("--poll", type=float, default=3, help="volunteers' poll interval (s)")
    parser.add_argument("--think", type=float, default=1, help="experts' pause (s)")
    parser.add_argument("--database", default="wildweb_bench_pages")
    parser.add_argument("--out", type=Path, default=None)
    return parser


def main() -> None:
    args = parser_build().parse_args()
    from search import _use_database

    _use_database(args.database)
    scratch = Path(tempfile.mkdtemp(prefix="wildweb-bench-pages-"))
    os.environ.update(
        DB_STATEMENT_TIMEOUT_MS="30000",
        ALLOWED_HOSTS="127.0.0.1,testserver",  # gunicorn's clients, then the query counts
        SECURE_SSL_REDIRECT="0",
        MEDIA_ROOT=str(scratch / "media"),
        STATIC_ROOT=str(scratch / "static"),
        CELERY_KEY_PREFIX=f"wildweb-bench-pages-{os.getpid()}:",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    started = time.monotonic()
    people = catalogue_build(
        individuals=args.individuals,
        volunteers=args.volunteers,
        experts=args.experts,
        awaiting=args.awaiting,
        identified=args.identified,
        candidates=args.candidates,
    )
    print(f"catalogue built in {time.monotonic() - started:.0f} s", flush=True)
    from django.db import connection

    # As autovacuum would have by now in a running catalogue: on fresh tables the planner
    # guesses one row and the queue's queries loop (the animal page's SQL: 47 ms, not 10).
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    stack = Stack(scratch)
    try:
        run = load_run(
            base=stack.web_start(),
            experts=[session_cookie(user) for user in people["experts"]],
            volunteers=[session_cookie(user) for user in people["volunteers"]],
            seconds=args.seconds,
            warm_up=args.warm_up,
            poll=args.poll,
            think=args.think,
        )
    finally:
        stack.stop()
        from wildweb.celery import app

        app.control.purge()
    queries = page_query_counts(expert=people["experts"][0], volunteer=people["volunteers"][0])
    result = {
        "setup": {
            **{key: value for key, value in vars(args).items() if key not in ("out", "database")},
            "gunicorn": f"{WEB_WORKERS} workers x {WEB_THREADS} threads (gthread)",
        },
        "load_average_1min": run["load_average_1min"],
        "pages": {
            page: {**page_summary(run["samples"].get(page, [])), "queries": queries.get(page)}
            for page in EXPECTED_STATUS
        },
    }
    print(table_markdown(result["pages"]))
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def catalogue_build(
    *,
    individuals: int,
    volunteers: int,
    experts: int,
    awaiting: int,
    identified: int,
    candidates: int,
) -> dict[str, list]:
    """The catalogue the load runs on (see the module's docstring); returns the people."""
    from catalogue.models import Encounter
    from tests.factories import (
        EncounterFactory,
        IndividualFactory,
        SpeciesFactory,
        UserFactory,
        confirmed_sighting,
        ranked_photo,
    )

    rng = random.Random(0)
    species = SpeciesFactory(name="Lynx")
    known = IndividualFactory.create_batch(individuals, species=species)
    for individual in known:
        confirmed_sighting(individual=individual)
    # No password: a hash costs ~0.3 s each, and everyone signs in through a stored session.
    people = {
        "volunteers": [UserFactory(role="volunteer", password=None) for _ in range(volunteers)],
        "experts": [UserFactory(role="expert", password=None) for _ in range(experts)],
    }
    for volunteer in people["volunteers"]:
        for individual in rng.sample(known, identified):
            confirmed_sighting(individual=individual, submitted_by=volunteer)
        for n in range(awaiting):
            sighting = EncounterFactory(
                species=species, submitted_by=volunteer, status=Encounter.Status.AWAITING_REVIEW
            )
            for _ in range(1 + n % 2):
                ranking = rng.sample(known, candidates)
                probabilities = sorted((rng.random() for _ in ranking), reverse=True)
                ranked_photo(encounter=sighting, ranking=list(zip(ranking, probabilities)))
    return people


def session_cookie(user) -> str:  # noqa: ANN001
    """The session id of ``user`` signed in, stored in the database as the login form does."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


class Browser:
    """One person's requests, each timed into ``samples`` under its page's name."""

    def __init__(self, base: str, session_id: str, samples: dict, lock: threading.Lock) -> None:
        import requests
        from django.conf import settings
        from django.utils.crypto import get_random_string

        self.base = base
        self.samples = samples
        self.lock = lock
        self.recording = False
        self.http = requests.Session()
        # The cookies are Secure (DEBUG=0) and this is plain HTTP, so they are sent by hand;
        # the jar takes none (a browser would send the messages cookie back, nothing else).
        self.http.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        csrf = get_random_string(32)  # a CSRF secret, in the cookie and repeated in the header
        self.http.headers["Cookie"] = (
            f"{settings.SESSION_COOKIE_NAME}={session_id}; {settings.CSRF_COOKIE_NAME}={csrf}"
        )
        self.http.headers["X-CSRFToken"] = csrf

    def request(self, page: str, method: str, path: str, **kwargs) -> str:  # noqa: ANN003
        started = time.perf_counter()
        try:
            response = self.http.request(
                method, self.base + path, timeout=30, allow_redirects=False, **kwargs
            )
            status, text = response.status_code, response.text
        except Exception:  # a refused or timed-out request counts as an error
            status, text = -1, ""
        milliseconds = (time.perf_counter() - started) * 1000
        if self.recording:
            with self.lock:
                self.samples[page].append((milliseconds, status))
        return text

    def animal_open(self, rng: random.Random) -> tuple[str, re.Match | None]:
        """The review queue, then one of its first animals: (its id, its first candidate)."""
        ids = QUEUE_LINK.findall(self.request("review-queue", "GET", "/review/"))
        if not ids:
            return "", None
        annotation_id = rng.choice(ids[:20])
        page = self.request("review-annotation", "GET", f"/review/{annotation_id}/")
        return annotation_id, FIRST_CANDIDATE.search(page)

    def act(self, page: str, annotation_id: str, candidate: re.Match, action: str) -> None:
        individual, expected = candidate.groups()
        data = {"action": action, "individual": individual, "expected_individual": expected}
        self.request(page, "POST", f"/review/{annotation_id}/act/", data=data)


def expert_loop(browser: Browser, rng: random.Random, stop_at: float, think: float) -> None:
    def pause() -> None:
        time.sleep(think * rng.uniform(0.5, 1.5))

    while time.monotonic() < stop_at:
        annotation_id, candidate = browser.animal_open(rng)
        pause()
        if candidate:
            action = rng.choice(["same", "reject"])
            browser.act("review-act (decide)", annotation_id, candidate, action)
            pause()


def volunteer_loop(browser: Browser, rng: random.Random, stop_at: float, poll: float) -> None:
    time.sleep(rng.uniform(0, poll))  # volunteers do not all poll in step
    polls = 0
    while time.monotonic() < stop_at:
        started = time.monotonic()
        fragment = browser.request(
            "my-sightings (htmx)", "GET", "/sightings/mine/", headers={"HX-Request": "true"}
        )
        own = OWN_SIGHTING_LINK.findall(fragment)
        if own:
            browser.request("sighting-detail", "GET", f"/sightings/{rng.choice(own)}/")
        polls += 1
        if polls % 3 == 0:
            annotation_id, candidate = browser.animal_open(rng)
            if candidate:
                vote = rng.choice(["vote-same", "vote-different"])
                browser.act("review-act (vote)", annotation_id, candidate, vote)
        time.sleep(max(0.0, poll - (time.monotonic() - started)))


def load_run(
    *,
    base: str,
    experts: list[str],
    volunteers: list[str],
    seconds: float,
    warm_up: float,
    poll: float,
    think: float,
) -> dict:
    """Every person's loop in its own thread; samples from after the warm-up only."""
    samples: dict[str, list[tuple[float, int]]] = defaultdict(list)
    lock = threading.Lock()
    stop_at = time.monotonic() + warm_up + seconds
    browsers, threads = [], []
    for index, session_id in enumerate(experts + volunteers):
        browser = Browser(base, session_id, samples, lock)
        rng = random.Random(index)
        if index < len(experts):
            target, pace = expert_loop, think
        else:
            target, pace = volunteer_loop, poll
        browsers.append(browser)
        threads.append(threading.Thread(target=target, args=(browser, rng, stop_at, pace)))
    for thread in threads:
        thread.start()
    time.sleep(warm_up)
    for browser in browsers:
        browser.recording = True
    load_average = []
    while time.monotonic() < stop_at:
        load_average.append(os.getloadavg()[0])
        time.sleep(min(2.0, max(0.0, stop_at - time.monotonic())))
    for thread in threads:
        thread.join()
    return {
        "samples": dict(samples),
        "load_average_1min": {
            "min": round(min(load_average), 2),
            "mean": round(statistics.mean(load_average), 2),
            "max": round(max(load_average), 2),
        },
    }


def page_summary(samples: list[tuple[float, int]]) -> dict:
    """Requests, latency percentiles (ms, nearest rank), errors and statuses of one page."""
    if not samples:
        return {"requests": 0, "errors": 0}
    ordered = sorted(milliseconds for milliseconds, _ in samples)

    def percentile(fraction: float) -> float:
        return round(ordered[max(0, int(round(fraction * len(ordered))) - 1)], 1)

    statuses = Counter(status for _, status in samples)
    return {
        "requests": len(ordered),
        "p50_ms": percentile(0.5),
        "p95_ms": percentile(0.95),
        "p99_ms": percentile(0.99),
        "max_ms": round(ordered[-1], 1),
        "errors": sum(n for status, n in statuses.items() if status < 0 or status >= 400),
        "statuses": {str(status): n for status, n in sorted(statuses.items())},
    }


def page_query_counts(*, expert, volunteer) -> dict[str, int]:  # noqa: ANN001
    """The SQL queries each page asks for, once each, in-process (Django's test client)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    counts = {}

    def count(page: str, client: Client, method: str, path: str, **kwargs) -> str:  # noqa: ANN003
        with CaptureQueriesContext(connection) as queries:
            response = getattr(client, method)(path, **kwargs)
        assert response.status_code in EXPECTED_STATUS[page], (page, response.status_code)
        counts[page] = len(queries)
        return response.content.decode()

    experts, volunteers = Client(), Client()
    experts.force_login(expert)
    volunteers.force_login(volunteer)
    annotation_id = QUEUE_LINK.findall(count("review-queue", experts, "get", "/review/"))[0]
    page = count("review-annotation", experts, "get", f"/review/{annotation_id}/")
    individual, expected = FIRST_CANDIDATE.search(page).groups()
    form = {"individual": individual, "expected_individual": expected}
    act = f"/review/{annotation_id}/act/"
    count("review-act (vote)", volunteers, "post", act, data={**form, "action": "vote-same"})
    count("review-act (decide)", experts, "post", act, data={**form, "action": "reject"})
    own = count("my-sightings (htmx)", volunteers, "get", "/sightings/mine/", HTTP_HX_REQUEST="1")
    sighting_id = OWN_SIGHTING_LINK.findall(own)[0]
    count("sighting-detail", volunteers, "get", f"/sightings/{sighting_id}/")
    return counts


def table_markdown(pages: dict) -> str:
    lines = [
        "| page | requests | p50 ms | p95 ms | p99 ms | max ms | errors | SQL queries |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for page, row in pages.items():
        cells = [row.get(key, "—") for key in ("requests", "p50_ms", "p95_ms", "p99_ms")]
        cells += [row.get("max_ms", "—"), row["errors"], row["queries"]]
        lines.append(f"| {page} | " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
