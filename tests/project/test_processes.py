"""`make demo` runs the web server, three workers and beat; Ctrl-C (SIGINT) stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from conftest import CELERY_KEY_PREFIX, REPO_ROOT, _test_database_url
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

SUPERVISOR = """
import sys
from pathlib import Path
from wildweb.celery import WORKER_GROUPS, beat_command, worker_command
from wildweb.processes import processes_supervise

port, schedule = sys.argv[1], Path(sys.argv[2])
commands = {"web": [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]}
for group, queues in WORKER_GROUPS.items():
    commands[f"worker-{group}"] = worker_command(queues=queues, name=group, quiet_cluster=True)
commands["beat"] = beat_command(schedule=schedule)
print("stopped:", processes_supervise(commands), flush=True)
"""


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_kill_stop_the_server_every_worker_and_beat(stop_signal) -> None:  # noqa: ANN001
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="wildweb-demo-"))
    log = folder / "log.txt"
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "CELERY_KEY_PREFIX": CELERY_KEY_PREFIX,
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("w") as sink:
        supervisor = subprocess.Popen(
            [sys.executable, "-c", SUPERVISOR, str(port), str(folder / "beat-schedule")],
            cwd=REPO_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: log.read_text().count(" ready.") == 3, timeout=180)
        wait_until(lambda: "beat: Starting" in log.read_text(), timeout=60)
        wait_until(lambda: "Quit the server with" in log.read_text(), timeout=60)
        descendants = psutil.Process(supervisor.pid).children(recursive=True)
        assert len(descendants) >= 5  # web, 3 workers (each with a pool child), beat

        supervisor.send_signal(stop_signal)
        supervisor.wait(timeout=90)

        assert "stopped: interrupted" in log.read_text()
        alive = [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if supervisor.poll() is None:  # the test failed: leave nothing running
            for process in psutil.Process(supervisor.pid).children(recursive=True):
                process.kill()
            supervisor.kill()
