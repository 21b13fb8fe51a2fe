"""The app's processes for a benchmark: gunicorn, the worker groups and beat, as ``make demo``
runs them, each logging to a file in the media folder (``queues.py`` kills and restarts
workers through it; ``pages.py`` starts gunicorn alone)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# gunicorn's gthread workers: 2 processes x 8 threads, as the benchmarks have always run it.
WEB_WORKERS = 2
WEB_THREADS = 8


class Stack:
    """gunicorn, the three worker groups and beat, as ``make demo`` and compose run them."""

    def __init__(self, media: Path) -> None:
        self.media = media
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start(self) -> str:
        from wildweb.celery import WORKER_GROUPS, beat_command

        base = self.web_start()
        for group in WORKER_GROUPS:
            self.worker_start(group)
        self._spawn("beat", beat_command(schedule=self.media / "beat-schedule"))
        for group in WORKER_GROUPS:
            self.wait_for(f"worker-{group}", " ready.")
        return base

    def web_start(self, workers: int = WEB_WORKERS, threads: int = WEB_THREADS) -> str:
        """gunicorn alone, on a free loopback port; returns its base URL once it listens."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self._spawn(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "wildweb.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--timeout",
                "120",
                # Idle connections stay open: a POST on one the server just closed would fail.
                "--keep-alive",
                "300",
            ],
        )
        self.wait_for("web", "Booting worker")
        return f"http://127.0.0.1:{port}"

    def worker_start(self, group: str) -> None:
        from wildweb.celery import WORKER_GROUPS, WORKER_NICENESS, worker_command

        command = worker_command(
            queues=WORKER_GROUPS[group],
            name=group,
            quiet_cluster=True,
            niceness=WORKER_NICENESS[group],
        )
        self._spawn(f"worker-{group}", command)

    def _spawn(self, name: str, command: list[str]) -> None:
        log = (self.media / f"{name}.log").open("a")
        self.processes[name] = subprocess.Popen(
            command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def log(self, name: str) -> str:
        return (self.media / f"{name}.log").read_text()

    def wait_for(self, name: str, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log(name):
            if time.monotonic() > deadline or self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} did not show {text!r}:\n{self.log(name)[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
