"""A process killed while writing a photo leaves no partial file under its final name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.test.utils import override_settings

from conftest import REPO_ROOT
from wildweb.storage import partial_files_remove

WRITER = """
import sys, time
from django.conf import settings
settings.configure(MEDIA_ROOT=sys.argv[1])
from django.utils.module_loading import import_string

class HalfSent:
    name = "photo.jpg"
    def chunks(self):
        yield b"\\xff\\xd8" + b"x" * 100_000
        print("half written", flush=True)
        time.sleep(600)  # the upload stalls here; the process is killed
        yield b"\\xff\\xd9"

import_string(sys.argv[2])(location=sys.argv[1]).save("images/2026/01/photo.jpg", HalfSent())
"""


def _killed_mid_write(storage_class: str) -> Path:
    media = Path(tempfile.mkdtemp(prefix="wildweb-storage-"))
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(media), storage_class],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "half written"
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=10)
    finally:
        if writer.poll() is None:
            writer.kill()
    return media


def test_the_crash_is_real_with_djangos_plain_storage() -> None:
    media = _killed_mid_write("django.core.files.storage.FileSystemStorage")
    assert list((media / "images").rglob("*.jpg")), "the plain storage leaves a partial photo"


def test_atomic_storage_leaves_no_partial_photo_and_the_sweep_removes_the_leftover() -> None:
    media = _killed_mid_write("wildweb.storage.AtomicFileSystemStorage")
    assert not (media / "images").exists() or not list((media / "images").rglob("*"))
    leftovers = list((media / ".partial").iterdir())
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0
    with override_settings(MEDIA_ROOT=media):
        assert partial_files_remove(older_than_seconds=3600) == 0  # recent: may be in use
        assert partial_files_remove(older_than_seconds=0) == 1
    assert not list((media / ".partial").iterdir())


@pytest.mark.django_db
def test_photos_are_still_stored_whole_through_the_default_storage(settings) -> None:  # noqa: ANN001
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    first = default_storage.save("images/a.jpg", ContentFile(b"one"))
    second = default_storage.save("images/a.jpg", ContentFile(b"two"))  # name taken: a new one
    assert first != second
    assert (Path(settings.MEDIA_ROOT) / first).read_bytes() == b"one"
    assert (Path(settings.MEDIA_ROOT) / second).read_bytes() == b"two"
    assert oct((Path(settings.MEDIA_ROOT) / first).stat().st_mode & 0o777) == oct(0o644)
