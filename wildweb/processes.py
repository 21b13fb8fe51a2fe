"""Running the app's processes together (``make demo``) and stopping them all together."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence

# Celery workers finish their current task on SIGTERM (a warm shutdown); runserver stops on
# SIGINT. Whatever is still running after the grace period is killed.
GRACE_SECONDS = 20


def processes_supervise(commands: dict[str, Sequence[str]], *, out=sys.stdout) -> str:  # noqa: ANN001
    """Start every command, wait until one exits or this process gets SIGINT or SIGTERM, then
    stop them all.

    The children run in their own session, so a terminal's Ctrl-C reaches only this process,
    which then stops each child the way it expects, in the same way for Ctrl-C and ``kill``.

    Args:
        commands: Name → command line.
        out: Where to say what happened.

    Returns:
        Why everything stopped: ``"interrupted"`` or the name of the process that exited.
    """
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` acts like Ctrl-C
    running: dict[str, subprocess.Popen] = {}
    reason = "interrupted"
    try:
        for name, command in commands.items():
            running[name] = subprocess.Popen(list(command), start_new_session=True)
        while True:
            exited = [name for name, process in running.items() if process.poll() is not None]
            if exited:
                reason = exited[0]
                out.write(f"{reason} exited (code {running[reason].returncode}); stopping.\n")
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        for name, process in running.items():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM if "celery" in process.args else signal.SIGINT)
        deadline = time.monotonic() + GRACE_SECONDS
        for process in running.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return reason
