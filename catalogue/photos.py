"""Decoding uploaded photos: validation, EXIF date and GPS, upright RGB storage, thumbnails.

Everything a person can upload passes through ``photo_read``; it either returns a clean
photo or raises ``ServiceError`` with a message that names the file and says what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from wildweb.errors import ServiceError

# A truncated file must fail, not be silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "MPO"}
# First bytes of the accepted formats: such a file that fails to open is damaged, not foreign.
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"RIFF", b"II*\x00", b"MM\x00*", b"BM", b"GIF8")
EXIF_IFD = 0x8769
GPS_IFD = 0x8825
TAG_DATETIME = 306
TAG_DATETIME_ORIGINAL = 36867
TAG_OFFSET_TIME_ORIGINAL = 36881


@dataclass(frozen=True)
class Photo:
    """An accepted photo: upright RGB JPEG bytes plus what its EXIF said."""

    filename: str
    sha256: str  # of the uploaded bytes, so the same file uploaded twice is recognised
    content: bytes
    width: int
    height: int
    taken_at: datetime | None
    latitude: float | None
    longitude: float | None


def photo_read(*, data: bytes, filename: str, max_bytes: int, max_pixels: int) -> Photo:
    """Validate and decode one uploaded photo.

    Args:
        data: The uploaded bytes.
        filename: The name the uploader gave, used in messages.
        max_bytes: Larger files are refused before decoding.
        max_pixels: Larger images (decompression bombs included) are refused before decoding.

    Returns:
        The photo, upright and converted to 8-bit RGB.

    Raises:
        ServiceError: The file is empty, too big, not an image, damaged or truncated.
    """
    if not data:
        raise ServiceError(f"{filename}: the file is empty.")
    if len(data) > max_bytes:
        raise ServiceError(
            f"{filename}: the file is {len(data) / 1e6:.1f} MB; "
            f"the limit is {max_bytes / 1e6:.0f} MB."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check size ourselves
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise ServiceError(_too_many_pixels(filename, None, max_pixels)) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            if data.startswith(IMAGE_SIGNATURES):
                raise ServiceError(
                    f"{filename}: the image is damaged or truncated and cannot be read."
                ) from None
            raise ServiceError(
                f"{filename}: this is not a photo we can read. "
                "Please upload JPEG, PNG, WebP or TIFF."
            ) from None
        if image.format not in ACCEPTED_FORMATS:
            raise ServiceError(
                f"{filename}: {image.format} files are not accepted; use JPEG or PNG."
            )
        width, height = image.size
        if width * height > max_pixels:
            raise ServiceError(_too_many_pixels(filename, (width, height), max_pixels))
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise ServiceError(
                f"{filename}: the image is damaged or truncated and cannot be read ({error})."
            ) from None

    exif = image.getexif()
    upright = _to_rgb(ImageOps.exif_transpose(image))
    buffer = io.BytesIO()
    upright.save(buffer, "JPEG", quality=92)
    latitude, longitude = _exif_gps(exif)
    return Photo(
        filename=filename,
        sha256=hashlib.sha256(data).hexdigest(),
        content=buffer.getvalue(),
        width=upright.width,
        height=upright.height,
        taken_at=_exif_datetime(exif),
        latitude=latitude,
        longitude=longitude,
    )


def thumbnail_bytes(content: bytes, size: int) -> bytes:
    """A JPEG whose longer side is at most ``size`` pixels."""
    with Image.open(io.BytesIO(content)) as image:
        image = _to_rgb(image)
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        return buffer.getvalue()


def _too_many_pixels(filename: str, size: tuple[int, int] | None, max_pixels: int) -> str:
    dimensions = f" ({size[0]}×{size[1]})" if size else ""
    return (
        f"{filename}: the image is too large{dimensions}; the limit is "
        f"{max_pixels / 1e6:.0f} megapixels. Please resize it."
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: CMYK, 16-bit, palette, grayscale, with or without alpha."""
    if image.mode in {"I;16", "I;16B", "I;16L", "I"}:
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        span = max(array.max() - array.min(), 1e-12)
        image = Image.fromarray(((array - array.min()) / span * 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in {"RGBA", "LA", "PA"}:
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def _exif_datetime(exif: Image.Exif) -> datetime | None:
    details = exif.get_ifd(EXIF_IFD)
    raw = details.get(TAG_DATETIME_ORIGINAL) or exif.get(TAG_DATETIME)
    if not raw:
        return None
    try:
        taken = datetime.strptime(str(raw).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset = details.get(TAG_OFFSET_TIME_ORIGINAL)
    if offset:
        try:
            sign = -1 if str(offset).startswith("-") else 1
            hours, minutes = str(offset).lstrip("+-").split(":")
            taken = taken.replace(
                tzinfo=timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))
            )
        except ValueError:
            pass
    return taken


def _exif_gps(exif: Image.Exif) -> tuple[float | None, float | None]:
    gps = exif.get_ifd(GPS_IFD)
    try:
        latitude = _degrees(gps[2]) * (-1 if gps.get(1, "N") in ("S", b"S") else 1)
        longitude = _degrees(gps[4]) * (-1 if gps.get(3, "E") in ("W", b"W") else 1)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None, None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None, None
    return round(latitude, 7), round(longitude, 7)


def _degrees(value: tuple) -> float:
    degrees, minutes, seconds = (float(part) for part in value)
    return degrees + minutes / 60 + seconds / 3600
