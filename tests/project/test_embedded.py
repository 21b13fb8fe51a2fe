"""The embedded Postgres: ``make stop`` stops it even after a client died by ``kill -9``;
it runs with shared buffers sized for the vector indexes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from wildweb.embedded import stop

pytestmark = pytest.mark.slow

CLIENT = """
import sys, time, warnings
warnings.simplefilter("ignore")
import pgserver
server = pgserver.get_server(sys.argv[1], cleanup_mode="stop")
print(server.get_pid(), flush=True)
time.sleep(600)
"""


def test_stop_stops_postgres_after_a_client_was_killed() -> None:
    pg_data = Path(tempfile.mkdtemp(prefix="wildweb-pg-stop-")) / "pg"
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(pg_data)], stdout=subprocess.PIPE, text=True
    )
    try:
        postmaster = int(client.stdout.readline())
        assert psutil.pid_exists(postmaster)
        os.kill(client.pid, signal.SIGKILL)  # its pid stays in pgserver's list of clients
        client.wait(timeout=10)

        stop(pg_data_dir=pg_data, redis_dir=pg_data / "no-redis")

        gone = not psutil.pid_exists(postmaster) or (
            psutil.Process(postmaster).status() == psutil.STATUS_ZOMBIE
        )
        assert gone, "the embedded Postgres is still running"
        assert not (pg_data / "postmaster.pid").exists()
    finally:
        if client.poll() is None:
            client.kill()
        if psutil.pid_exists(postmaster) if "postmaster" in locals() else False:
            os.kill(postmaster, signal.SIGKILL)


@pytest.mark.django_db
def test_embedded_postgres_runs_with_the_wanted_shared_buffers(settings) -> None:  # noqa: ANN001
    from django.db import connection

    from wildweb.embedded import shared_buffers_mb

    if not settings.EMBEDDED_DATABASE:
        pytest.skip("a configured server keeps its own settings")

    with connection.cursor() as cursor:
        cursor.execute("SELECT setting::bigint FROM pg_settings WHERE name = 'shared_buffers'")
        (pages,) = cursor.fetchone()
    assert pages * 8 // 1024 == shared_buffers_mb() >= 128
