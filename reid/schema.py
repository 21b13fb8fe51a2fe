"""The ingestion schema: one reading of ``metadata.csv``, boxes, dates, places and viewpoints.

Everything that takes labelled photos in (the ``reid`` command line, the catalogue's importer,
the upload form and the API) parses and checks its values here, so that a box, a date or a
place accepted by one entry point is accepted by every other, and NaN is refused by all.

The CSV is wildlife-datasets': ``image_id, identity, path`` and optionally ``species, bbox,
date, viewpoint, encounter``. ``bbox`` is ``x, y, w, h`` in pixels, written as a JSON list
(``[10, 20, 30, 40]``) or as bare numbers separated by commas or spaces.

Every check raises :class:`SchemaError` (a ``ValueError``) with a message meant for a person.
Imports no Django and no torch.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

REQUIRED_COLUMNS = ("image_id", "identity", "path")
OPTIONAL_COLUMNS = ("species", "bbox", "date", "viewpoint", "encounter")
EARLIEST_DATE = date(1900, 1, 1)
VIEWPOINT_MAX_LENGTH = 30
# Drawn and exported boxes are rounded, so a box may overshoot the photo by this many pixels;
# it is then clipped to the photo.
BBOX_SLACK_PX = 1.0
TEXT_ENCODINGS = ("utf-8-sig", "cp1252")

BBox = tuple[float, float, float, float]


class SchemaError(ValueError):
    """A value that does not follow the ingestion schema; ``str()`` is the message."""


@dataclass(frozen=True)
class CsvRow:
    """One data line of a ``metadata.csv``: its line number and stripped cell values."""

    line: int
    values: dict[str, str]

    def get(self, column: str) -> str:
        return self.values.get(column, "")


def finite_number(value: object, name: str = "value") -> float:
    """``value`` as a finite float; bools, text, NaN and infinities are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SchemaError(f"{name} must be a number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise SchemaError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise SchemaError(f"{name} must be a finite number, not {value!r}")
    return number


def parse_bbox(text: object) -> BBox | None:
    """Read a box ``x, y, w, h``: a list, JSON-like text or separated numbers; empty is None.

    Only the grammar is checked here; :func:`validate_bbox` checks the values.
    """
    if text is None:
        return None
    if isinstance(text, str):
        inner = text.strip()
        if inner.startswith("[") and inner.endswith("]"):
            inner = inner[1:-1]
        parts = [p for p in re.split(r"[\s,;]+", inner.strip()) if p]
        if not parts:
            return None
    elif isinstance(text, (list, tuple)):
        parts = list(text)  # a JSON list: its values must be numbers, not text
    else:
        raise SchemaError(f"a box must be [x, y, width, height], not {text!r}")
    if len(parts) != 4:
        raise SchemaError(f"a box must have 4 numbers (x, y, width, height), not {text!r}")
    if not isinstance(text, str) and any(isinstance(p, str) for p in parts):
        raise SchemaError(f"a box must hold numbers, not {text!r}")
    x, y, w, h = (finite_number(p, "a box value") for p in parts)
    return (x, y, w, h)


def validate_bbox(
    bbox: object,
    *,
    width: float | None = None,
    height: float | None = None,
    relative: bool = False,
) -> BBox:
    """The one box check: finite numbers, positive size, inside the photo.

    Args:
        bbox: ``(x, y, w, h)``; in pixels, or fractions of the photo when ``relative``.
        width: Photo width in pixels; when given (with ``height``) the box must lie inside it.
        height: Photo height in pixels.
        relative: The box is in fractions of the photo (MegaDetector); it must lie in [0, 1].

    Returns:
        The box as floats, clipped to the photo where it overshoots by rounding only.

    Raises:
        SchemaError: NaN or infinite values, a negative or zero size, a box outside the photo.
    """
    parsed = parse_bbox(bbox)  # type: ignore[arg-type]
    if parsed is None:
        raise SchemaError("the box is empty")
    x, y, w, h = parsed
    shown = f"[{x:g}, {y:g}, {w:g}, {h:g}]"
    if x < 0 or y < 0:
        raise SchemaError(f"the box {shown} starts outside the photo (negative x or y)")
    if relative:
        if w <= 0 or h <= 0:
            raise SchemaError(f"the box {shown} has no size")
        if x + w > 1 + 1e-4 or y + h > 1 + 1e-4:
            raise SchemaError(f"the box {shown} reaches outside the photo (fractions above 1)")
        return (x, y, min(w, 1 - x), min(h, 1 - y))
    if w < 1 or h < 1:
        raise SchemaError(f"the box {shown} is smaller than one pixel")
    if width is not None and height is not None:
        if x + w > width + BBOX_SLACK_PX or y + h > height + BBOX_SLACK_PX:
            raise SchemaError(f"the box {shown} lies outside the {width:g}×{height:g} photo")
        if x >= width or y >= height:
            raise SchemaError(f"the box {shown} lies outside the {width:g}×{height:g} photo")
        w, h = min(w, width - x), min(h, height - y)
    return (x, y, w, h)


def parse_bbox_list(value: object) -> list[BBox | None]:
    """Boxes of an upload, one per photo in order: ``[[x, y, w, h] or null, ...]``.

    Only the grammar and finiteness are checked; each box is checked against its photo by
    :func:`validate_bbox` once the photo's size is known.
    """
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise SchemaError("boxes must be a list: [[x, y, width, height] or null, ...]")
    boxes: list[BBox | None] = []
    for index, box in enumerate(value, start=1):
        if box is None:
            boxes.append(None)
            continue
        if not isinstance(box, (list, tuple)):
            raise SchemaError(f"box {index} must be [x, y, width, height] or null, not {box!r}")
        try:
            boxes.append(parse_bbox(box))
        except SchemaError as error:
            raise SchemaError(f"box {index}: {error}") from None
    return boxes


def validate_coordinates(
    latitude: object | None, longitude: object | None
) -> tuple[float | None, float | None]:
    """Latitude and longitude together (or neither), finite and within their ranges."""
    if latitude is None and longitude is None:
        return None, None
    if latitude is None or longitude is None:
        raise SchemaError("give both latitude and longitude, or neither")
    lat = finite_number(latitude, "latitude")
    lon = finite_number(longitude, "longitude")
    if not -90 <= lat <= 90:
        raise SchemaError(f"latitude must be between -90 and 90, not {lat:g}")
    if not -180 <= lon <= 180:
        raise SchemaError(f"longitude must be between -180 and 180, not {lon:g}")
    return lat, lon


def latest_date() -> date:
    """Tomorrow (UTC): a photo's clock or time zone may be a day ahead, never more."""
    return datetime.now(timezone.utc).date() + timedelta(days=1)


def validate_date(moment: date | datetime) -> date | datetime:
    """A date (or moment) between 1900-01-01 and tomorrow."""
    day = moment.date() if isinstance(moment, datetime) else moment
    if day < EARLIEST_DATE or day > latest_date():
        raise SchemaError(
            f"the date {day.isoformat()} must lie between {EARLIEST_DATE.isoformat()} and tomorrow"
        )
    return moment


def parse_date(text: str | None) -> datetime | None:
    """Read an ISO date or date-time (``2024-05-01``, ``2024-05-01 10:00:00``, with or
    without a UTC offset; EXIF's ``2024:05:01 10:00:00`` too) and check its range.

    Returns:
        The moment (naive when the text has no offset), or None for empty text.
    """
    text = (text or "").strip()
    if not text:
        return None
    exif = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})([ T].*)?", text)
    if exif:
        text = f"{exif[1]}-{exif[2]}-{exif[3]}{exif[4] or ''}"
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), time())
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SchemaError(f"the date {text!r} is not an ISO date like 2024-05-31") from None
    validate_date(moment)
    return moment


def parse_viewpoint(text: object) -> str:
    """Viewpoints are free text (``left``, ``face``), trimmed to at most 30 characters."""
    return str(text or "").strip()[:VIEWPOINT_MAX_LENGTH]


def decode_text(data: bytes, name: str = "the file") -> str:
    """Text of a CSV or JSON file: UTF-8 (with or without BOM, or UTF-16 with BOM), else
    Windows-1252 / Latin-1; binary data is refused."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    elif b"\x00" not in data:
        for encoding in TEXT_ENCODINGS:
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                continue
    raise SchemaError(
        f"{name} is not text in UTF-8 or Windows-1252/Latin-1; save it as UTF-8 and try again"
    )


def read_metadata_csv(path: str | Path) -> Iterator[CsvRow]:
    """The data rows of a ``metadata.csv``, encoding detected, required columns checked.

    Raises:
        SchemaError: The file is not text, or lacks a required column.
        OSError: The file cannot be read.
    """
    path = Path(path)
    text = decode_text(Path(path).read_bytes(), path.name)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise SchemaError(
            f"{path.name}: missing column(s) {', '.join(missing)}; "
            f"expected at least {', '.join(REQUIRED_COLUMNS)}"
        )
    reader.fieldnames = columns
    for line, record in enumerate(reader, start=2):
        values = {k: (v or "").strip() for k, v in record.items() if isinstance(k, str)}
        yield CsvRow(line=line, values=values)
