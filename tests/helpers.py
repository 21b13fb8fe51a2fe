"""Small helpers shared by tests: polling, photos made on the fly, every URL of the site, the
project's own apps."""

from __future__ import annotations

import io
import itertools
import struct
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import piexif
from PIL import Image


def wait_until(
    predicate: Callable[[], object], timeout: float = 60.0, interval: float = 0.25
) -> None:
    """Poll until ``predicate()`` is truthy; fail with a clear message after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.0f}s")
        time.sleep(interval)


def jpeg_bytes(
    size: tuple[int, int] = (64, 48),
    color: tuple[int, int, int] = (200, 120, 40),
    exif: bytes | None = None,
    mode: str = "RGB",
) -> bytes:
    image = Image.new(mode, size, color if mode == "RGB" else None)
    if mode == "RGB":
        # A gradient makes distinct photos hash differently and shows orientation.
        for x in range(size[0]):
            image.putpixel((x, 0), (x % 256, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **({"exif": exif} if exif else {}))
    return buffer.getvalue()


def exif_bytes(
    *,
    orientation: int | None = None,
    taken: str | None = None,
    gps: tuple[float, float] | None = None,
) -> bytes:
    """EXIF with an orientation, a DateTimeOriginal ("YYYY:MM:DD HH:MM:SS") and GPS."""
    zeroth: dict = {}
    exif: dict = {}
    gps_ifd: dict = {}
    if orientation:
        zeroth[piexif.ImageIFD.Orientation] = orientation
    if taken:
        exif[piexif.ExifIFD.DateTimeOriginal] = taken.encode()
    if gps:
        lat, lon = gps
        gps_ifd = {
            piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
            piexif.GPSIFD.GPSLatitude: _rational_dms(abs(lat)),
            piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
            piexif.GPSIFD.GPSLongitude: _rational_dms(abs(lon)),
        }
    return piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps_ifd})


def _rational_dms(value: float) -> tuple:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round(((value - degrees) * 60 - minutes) * 60 * 10000)
    return ((degrees, 1), (minutes, 1), (seconds, 10000))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width``×``height`` pixels but holds almost no data: a bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1) * 4))
        + chunk(b"IEND", b"")
    )


def every_url(values: dict[str, list[object]]) -> tuple[list[tuple[str, str]], set[str]]:
    """Every URL of the project, walked from the root resolver, with its arguments taken from
    ``values`` (the values to try for each argument name, every combination).

    Returns the (URL name, path) pairs built, and the names of the patterns left out because
    ``values`` lacks one of their arguments, so that a test can say which ones it skips.
    """
    from django.urls import URLResolver, get_resolver, reverse

    built: list[tuple[str, str]] = []
    skipped: set[str] = set()

    def walk(patterns: Iterable, namespace: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = ":".join(n for n in (namespace, pattern.namespace or "") if n)
                walk(pattern.url_patterns, inner)
                continue
            # An unnamed pattern (the admin's catch-all) cannot be reversed: it is skipped.
            name = ":".join(n for n in (namespace, pattern.name or str(pattern.pattern)) if n)
            arguments = list(pattern.pattern.regex.groupindex)
            if not pattern.name or any(argument not in values for argument in arguments):
                skipped.add(name)
                continue
            for combination in itertools.product(*(values[a] for a in arguments)):
                built.append((name, reverse(name, kwargs=dict(zip(arguments, combination)))))

    walk(get_resolver().url_patterns, "")
    return built, skipped


def first_party_apps() -> list[str]:
    """The INSTALLED_APPS entries whose package is a folder of this checkout (not a dependency)."""
    from django.conf import settings

    repo_root = Path(__file__).resolve().parent.parent
    return [
        app
        for app in settings.INSTALLED_APPS
        if (repo_root / app.split(".")[0] / "__init__.py").exists()
    ]


def imports_worker_run() -> None:
    """Do what a ``bulk`` worker does with each import waiting for one (tests with no worker)."""
    from training.models import DatasetImport
    from training.services.imports import dataset_import_execute

    waiting = DatasetImport.objects.filter(
        state__in=(DatasetImport.State.QUEUED, DatasetImport.State.STORING), worker=""
    )
    for import_id in waiting.values_list("pk", flat=True):
        dataset_import_execute(import_id=import_id)
