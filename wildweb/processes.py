"""Running the app's processes together (``make demo``) and stopping them all together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

# The signals that stop everything: Ctrl-C, ``kill`` and the terminal closing.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# On the first stop signal every child gets SIGTERM at once: a Celery worker finishes its
# current task (a warm shutdown), beat and the web server exit. What still runs this many
# seconds later is killed with its whole process group (a worker's pool children too); a
# second stop signal kills at once. A killed worker's job is picked up again by the sweep.
STOP_GRACE_SECONDS = 20.0
# SIGKILL cannot be refused, but on a loaded machine the kernel may take a moment to finish
# the killed processes off; this bounds how long the supervisor waits to see them gone.
KILL_WAIT_SECONDS = 5.0
POLL_SECONDS = 0.2


def processes_supervise(
    commands: dict[str, Sequence[str]],
    *,
    out=sys.stdout,  # noqa: ANN001
    grace_seconds: float = STOP_GRACE_SECONDS,
) -> str:
    """Start every command, wait until one exits or this process gets a stop signal
    (``STOP_SIGNALS``), then stop them all within ``grace_seconds`` plus a few seconds.

    Each child runs in a session (and process group) of its own, so a terminal's Ctrl-C
    reaches only this process, which stops all the children in the same way whichever
    signal it got, and can kill each child's group as a whole.

    Args:
        commands: Name → command line.
        out: Where to say what happened.
        grace_seconds: How long the children get to exit after SIGTERM before SIGKILL.

    Returns:
        Why everything stopped: ``"interrupted"`` or the name of the process that exited.
    """
    stop_signals_received = 0

    def stop_requested(signum: int, frame: object) -> None:
        # Only counts: raising here (as Python's own Ctrl-C handler does) could interrupt
        # subprocess in the middle of its bookkeeping and leave a child unwaited.
        nonlocal stop_signals_received
        stop_signals_received += 1

    # Installed before any child starts, whatever this process inherited: a shell running
    # it in the background (``make demo &``) makes it ignore SIGINT otherwise.
    previous_handlers = {sig: signal.signal(sig, stop_requested) for sig in STOP_SIGNALS}
    running: dict[str, subprocess.Popen] = {}
    reason = "interrupted"
    try:
        for name, command in commands.items():
            if stop_signals_received:
                break
            running[name] = subprocess.Popen(list(command), start_new_session=True)
        while not stop_signals_received:
            exited = [name for name, process in running.items() if _exited(process)]
            if exited:
                reason = exited[0]
                out.write(f"{reason} exited (code {_exit_code(running[reason])}); stopping.\n")
                break
            time.sleep(POLL_SECONDS)
    finally:  # also when a command cannot start: those started must not be left running
        _processes_stop(
            running,
            grace_seconds=grace_seconds,
            hurry=lambda: stop_signals_received >= 2,
            out=out,
        )
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    return reason


def _processes_stop(
    running: dict[str, subprocess.Popen],
    *,
    grace_seconds: float,
    hurry: Callable[[], bool],
    out,  # noqa: ANN001
) -> None:
    """SIGTERM to every child at once; after ``grace_seconds`` (or once ``hurry()``), SIGKILL
    to every child's process group; then reap the children."""
    alive = [name for name, process in running.items() if not _exited(process)]
    if alive:
        out.write(
            f"Stopping {', '.join(alive)} (up to {grace_seconds:.0f} s; "
            "Ctrl-C again to kill them now).\n"
        )
    for name in alive:
        _signal(running[name].pid, signal.SIGTERM, group=False)  # a worker's pool: its own
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and not hurry():
        if all(_exited(process) for process in running.values()):
            break
        time.sleep(POLL_SECONDS)
    late = [name for name, process in running.items() if not _exited(process)]
    if late:
        out.write(f"Killing {', '.join(late)}.\n")
    # Every group, also of a child that exited by itself: an orphaned grandchild goes too.
    # The children are not reaped yet, so no group id can belong to a stranger by now.
    for process in running.values():
        _signal(process.pid, signal.SIGKILL, group=True)
    kill_deadline = time.monotonic() + KILL_WAIT_SECONDS
    for name, process in running.items():
        try:
            process.wait(timeout=max(0.0, kill_deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            out.write(f"{name} (pid {process.pid}) did not die after SIGKILL.\n")
    while time.monotonic() < kill_deadline and any(
        _group_exists(process.pid) for process in running.values()
    ):
        time.sleep(0.05)


def _exited(process: subprocess.Popen) -> bool:
    return _exit_code(process) is not None


def _exit_code(process: subprocess.Popen) -> int | None:
    """The child's exit code (minus the signal that killed it), None while it runs; without
    reaping it: until it is reaped its pid, and so its process group's id, stays ours."""
    if process.returncode is not None:
        return process.returncode
    try:
        status = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return 0  # reaped elsewhere; its code is lost
    if status is None:
        return None
    return status.si_status if status.si_code == os.CLD_EXITED else -status.si_status


def _signal(pid: int, sig: signal.Signals, *, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass  # already gone
    except PermissionError:
        pass  # only a stranger could have that id by now; never signal it


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # the id was reused by someone else's group: ours is gone
    return True
