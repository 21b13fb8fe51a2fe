"""Unpacking a ZIP for an import: safe names, bounded size, and the layout it holds.

A ZIP may hold, optionally inside one wrapping folder:

* ``metadata.csv`` and the photos it names (the shared-dataset layout,
  ``images/<identity>/<file>.jpg``);
* one COCO, CCT or MegaDetector ``.json`` file and the photos it names;
* one folder per individual, ``<individual>/<photo>``.

Every member name is checked (symbolic links are refused), and the unpacked total is compared with
``settings.IMPORT_MAX_UNPACKED_BYTES``, before a single byte is written.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from django.conf import settings

from wildweb.errors import ServiceError

MAX_ZIP_MEMBERS = 100_000
LAYOUTS = (
    "a ZIP holding metadata.csv and its photos (e.g. images/<individual>/<photo>.jpg), "
    "a ZIP holding one COCO, CCT or MegaDetector .json file and its photos, "
    "a ZIP with one folder per individual (<individual>/<photo>), "
    "or a COCO, CCT or MegaDetector .json (or metadata.csv) together with a ZIP of its photos"
)


def archive_unpack(*, path: Path, target: Path) -> Path:
    """Unpack ``path`` into ``target`` (and return it).

    Unpacking twice into the same folder is harmless: members already there are kept.

    Raises:
        ServiceError: Not a ZIP, unsafe member names, too many members or too many bytes.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise ServiceError(f"{path.name}: not a ZIP archive.") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir() and not hidden(m.filename)]
        if not members:
            raise ServiceError(f"{path.name}: the archive holds no files.")
        unsafe = [m.filename for m in members if not _safe(m.filename)]
        if unsafe:
            raise ServiceError(
                f"{path.name}: unsafe paths in the archive (absolute or with '..'): "
                + ", ".join(unsafe[:5])
                + "; nothing was unpacked."
            )
        # Unpacked as a plain file holding the link's target, a link would only fail later
        # as "not a photo"; an upload may never point at the server's own files.
        links = [m.filename for m in members if _symbolic_link(m)]
        if links:
            raise ServiceError(
                f"{path.name}: the archive holds symbolic links, which uploads may not: "
                + ", ".join(links[:5])
                + "; nothing was unpacked. Put the photos themselves in the archive."
            )
        total = sum(m.file_size for m in members)
        limit = settings.IMPORT_MAX_UNPACKED_BYTES
        if len(members) > MAX_ZIP_MEMBERS or total > limit:
            raise ServiceError(
                f"{path.name}: unpacked it would be {total / 1e9:.2f} GB in {len(members)} "
                f"files; the limit is {limit / 1e9:.2f} GB and {MAX_ZIP_MEMBERS} files. "
                "Nothing was unpacked; split the archive."
            )
        target.mkdir(parents=True, exist_ok=True)
        for member in members:
            destination = target.joinpath(*PurePosixPath(member.filename).parts)
            if destination.is_file() and destination.stat().st_size == member.file_size:
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                # ZipExtFile reads no more than the declared size and checks the CRC.
                with archive.open(member) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
            except (zipfile.BadZipFile, OSError, EOFError) as error:
                destination.unlink(missing_ok=True)
                raise ServiceError(
                    f"{path.name}: {member.filename} cannot be unpacked ({error})."
                ) from None
    return target


def dataset_root(folder: Path) -> Path:
    """The folder a dataset starts in: one wrapping folder (``dataset/...``) is skipped."""
    entries = [p for p in folder.iterdir() if not hidden(p.name)]
    if len(entries) == 1 and entries[0].is_dir():
        inner = [p for p in entries[0].iterdir() if not hidden(p.name)]
        if any(p.is_dir() for p in inner) or any(
            p.suffix.lower() in (".csv", ".json") for p in inner
        ):
            return entries[0]
    return folder


def archive_layout(root: Path) -> tuple[str, Path | None]:
    """``("csv" | "json" | "folders", the metadata or JSON file)`` of an unpacked dataset."""
    if (root / "metadata.csv").is_file():
        return "csv", root / "metadata.csv"
    documents = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".json"]
    if len(documents) == 1:
        return "json", documents[0]
    if len(documents) > 1:
        raise ServiceError(
            "The archive holds several .json files; put exactly one COCO, CCT or MegaDetector "
            "file beside the photos."
        )
    return "folders", None


def _symbolic_link(member: zipfile.ZipInfo) -> bool:
    """A member stored with Unix mode S_IFLNK (``zip --symlinks``)."""
    return stat.S_ISLNK(member.external_attr >> 16)


def _safe(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return (
        not name.startswith(("/", "\\"))
        and not (parts and parts[0].endswith(":"))
        and ".." not in parts
        and "" not in parts
    )


def hidden(name: str) -> bool:
    """Dot files and macOS resource forks, left out; ``..`` is not hidden but unsafe."""
    parts = PurePosixPath(name).parts
    return any(
        (part.startswith(".") and part not in (".", "..")) or part == "__MACOSX" for part in parts
    )
