"""The expert-pages load benchmark (``benchmarks/jobs/pages.py``) parses its arguments, builds
its catalogue, and its simulated experts and volunteers get the answers a browser would from a
real server (signed in, CSRF accepted). Nothing here is timed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "jobs" / "pages.py"


@pytest.fixture
def pages(monkeypatch):  # noqa: ANN001, ANN201
    """The script as a module; the folders it puts on ``sys.path`` are taken off again."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("benchmark_pages", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_names_the_options() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for option in ("--seconds", "--experts", "--volunteers", "--out"):
        assert option in result.stdout


def test_options_default_to_the_issues_load(pages) -> None:  # noqa: ANN001
    args = pages.parser_build().parse_args([])
    assert (args.experts, args.volunteers, args.seconds, args.poll) == (10, 10, 30, 3)


@pytest.mark.django_db(transaction=True)
def test_a_short_load_gets_every_page_as_a_browser_would(pages, live_server) -> None:  # noqa: ANN001
    people = pages.catalogue_build(
        individuals=4, volunteers=1, experts=1, awaiting=8, identified=1, candidates=2
    )
    run = pages.load_run(
        base=live_server.url,
        experts=[pages.session_cookie(user) for user in people["experts"]],
        volunteers=[pages.session_cookie(user) for user in people["volunteers"]],
        seconds=1.5,
        warm_up=0,
        poll=0.3,
        think=0.05,
    )
    samples = run["samples"]
    # The volunteer votes on their third poll (0.6 s in), so every page was asked for.
    assert set(samples) == set(pages.EXPECTED_STATUS)
    for page, requests in samples.items():
        statuses = {status for _, status in requests}
        assert statuses <= pages.EXPECTED_STATUS[page], (page, statuses)
    counts = pages.page_query_counts(expert=people["experts"][0], volunteer=people["volunteers"][0])
    assert set(counts) == set(pages.EXPECTED_STATUS)
    assert all(count > 0 for count in counts.values())
