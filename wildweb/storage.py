"""Photo storage: on the file system, never showing a half-written file under its final name,
or in an S3-compatible object store that web and workers on several machines share."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from django.core.files.storage import FileSystemStorage
from django.utils.encoding import filepath_to_uri
from storages.backends.s3 import S3Storage

PARTIAL_DIR = ".partial"


class _WrittenFile:
    """A finished temporary file that Django's storage moves into place (one rename)."""

    def __init__(self, path: str) -> None:
        self._path = path

    def temporary_file_path(self) -> str:
        return self._path

    def close(self) -> None:
        pass


class AtomicFileSystemStorage(FileSystemStorage):
    """Writes each file under ``MEDIA_ROOT/.partial/`` and renames it into place.

    A web process killed mid-upload leaves at most an unnamed temporary file there (the
    sweep removes old ones), never a partial photo under ``images/``.
    """

    def _save(self, name: str, content: Any) -> str:
        if hasattr(content, "temporary_file_path"):  # already on disk: Django moves it
            return super()._save(name, content)
        partial = Path(self.location) / PARTIAL_DIR
        partial.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=partial)
        try:
            with os.fdopen(descriptor, "wb") as sink:
                for chunk in content.chunks():
                    sink.write(chunk if isinstance(chunk, bytes) else chunk.encode())
            return super()._save(name, _WrittenFile(temporary))
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)


class PrivateS3Storage(S3Storage):
    """Photos in an S3-compatible bucket whose links stay the app's own.

    ``url()`` gives ``MEDIA_URL + name``, the permission-checked photo view that the file
    system storage links to as well, so no bucket link (signed or not) ever reaches a page;
    the view streams the object after its check. Objects are written private (no ACL) and,
    as on the file system, an existing name is never overwritten.
    """

    default_acl = None
    file_overwrite = False

    def url(self, name: str, *args: Any, **kwargs: Any) -> str:
        from django.conf import settings

        return settings.MEDIA_URL + filepath_to_uri(name).lstrip("/")


def partial_files_remove(*, older_than_seconds: float = 3600) -> int:
    """Delete temporary files left by processes killed mid-write; returns how many."""
    from django.conf import settings

    folder = Path(settings.MEDIA_ROOT) / PARTIAL_DIR
    removed = 0
    if folder.is_dir():
        cutoff = time.time() - older_than_seconds
        for path in folder.iterdir():
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
    return removed
