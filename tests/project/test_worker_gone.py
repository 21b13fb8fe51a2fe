"""A job's worker is gone when its process is, even after another process got its pid."""

from __future__ import annotations

import socket
import subprocess
import sys

from wildweb.jobs import process_start, worker_gone, worker_name


def test_a_live_worker_is_not_gone_and_a_pid_reused_by_another_process_is() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    host = socket.gethostname()
    try:
        started = process_start(child.pid)
        assert started is not None
        assert not worker_gone(f"{host}:{child.pid}:{started}")
        # The dead worker's pid now names this child, which started at another time.
        assert worker_gone(f"{host}:{child.pid}:{int(started) - 1}")
        assert not worker_gone(f"{host}:{child.pid}")  # an earlier version's name: pid only
        assert not worker_gone(f"another-host:{child.pid}:1")  # other machines: never judged
    finally:
        child.kill()
        child.wait()
    assert worker_gone(f"{host}:{child.pid}:{started}")
    assert worker_gone(f"{host}:{child.pid}")


def test_this_process_names_itself_with_its_start_time() -> None:
    host, pid, started = worker_name().split(":")
    assert host == socket.gethostname() and pid.isdigit() and started == process_start(int(pid))
    assert not worker_gone(worker_name())
