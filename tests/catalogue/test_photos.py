"""Every kind of bad or unusual upload gets a clear answer from ``photo_read``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catalogue.photos import photo_read
from tests.helpers import exif_bytes, jpeg_bytes, png_header_only
from wildweb.errors import ServiceError

LIMITS = {"max_bytes": 5_000_000, "max_pixels": 40_000_000}


def read(data: bytes, filename: str = "photo.jpg", **limits: int):  # noqa: ANN201
    return photo_read(data=data, filename=filename, **{**LIMITS, **limits})


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def decoded(content: bytes) -> Image.Image:
    return Image.open(io.BytesIO(content))


def test_zero_byte_file_is_rejected_with_message() -> None:
    with pytest.raises(ServiceError, match="empty.jpg: the file is empty"):
        read(b"", "empty.jpg")


def test_text_file_is_rejected_as_not_an_image() -> None:
    with pytest.raises(ServiceError, match="notes.txt: this is not a photo"):
        read(b"just some words, not pixels\n" * 10, "notes.txt")


@pytest.mark.parametrize(
    "payload",
    [
        b"<!doctype html><html><body><script>alert(1)</script></body></html>",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    ],
    ids=["html", "svg"],
)
def test_markup_named_jpg_is_rejected(payload: bytes) -> None:
    with pytest.raises(ServiceError, match="fake.jpg: this is not a photo"):
        read(payload, "fake.jpg")


def test_truncated_jpeg_is_rejected_with_message() -> None:
    data = jpeg_bytes(size=(400, 300))
    with pytest.raises(ServiceError, match="cut.jpg: the image is damaged or truncated"):
        read(data[: len(data) // 2], "cut.jpg")


def test_corrupt_jpeg_is_rejected_with_message() -> None:
    data = bytearray(jpeg_bytes(size=(200, 200)))
    data[2:40] = b"\x00" * 38  # wreck the headers after the SOI marker
    with pytest.raises(ServiceError, match="broken.jpg"):
        read(bytes(data), "broken.jpg")


def test_decompression_bomb_is_rejected_before_decoding() -> None:
    with pytest.raises(ServiceError, match="bomb.png: the image is too large"):
        read(png_header_only(30000, 30000), "bomb.png")


def test_image_over_pixel_limit_is_rejected_with_its_size() -> None:
    with pytest.raises(ServiceError, match=r"9000×9000"):
        read(png_header_only(9000, 9000), "big.png", max_pixels=50_000_000)


def test_file_over_size_limit_is_rejected() -> None:
    with pytest.raises(ServiceError, match="the limit is"):
        read(jpeg_bytes(size=(300, 300)), max_bytes=100)


@pytest.mark.parametrize(
    "make",
    [
        lambda: encoded(Image.new("CMYK", (30, 20), (10, 200, 30, 0)), "JPEG"),
        lambda: encoded(Image.fromarray(np.full((20, 30), 40000, dtype=np.uint16)), "PNG"),
        lambda: encoded(Image.new("P", (30, 20), 3), "PNG"),
        lambda: encoded(Image.new("L", (30, 20), 128), "JPEG"),
        lambda: encoded(Image.new("RGBA", (30, 20), (0, 0, 255, 128)), "PNG"),
    ],
    ids=["cmyk", "16-bit", "palette", "grayscale", "rgba"],
)
def test_unusual_modes_are_accepted_and_stored_as_rgb(make) -> None:  # noqa: ANN001
    photo = read(make(), "odd.png")
    stored = decoded(photo.content)
    assert stored.mode == "RGB"
    assert stored.size == (30, 20) == (photo.width, photo.height)


def test_sixteen_bit_values_are_scaled_not_clipped() -> None:
    photo = read(encoded(Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)), "PNG"))
    assert 120 <= np.asarray(decoded(photo.content))[0, 0, 0] <= 135


def test_exif_rotated_photo_is_stored_upright() -> None:
    # Orientation 6: the camera stored it sideways; viewers rotate 90° clockwise.
    data = jpeg_bytes(size=(80, 40), exif=exif_bytes(orientation=6))
    photo = read(data)
    assert (photo.width, photo.height) == (40, 80)
    assert "Orientation" not in str(decoded(photo.content).getexif())


def test_exif_date_and_gps_are_read_from_a_real_photo(shared_datasets: Path) -> None:
    source = next((shared_datasets / "chimp_faces_demo" / "images").rglob("*.jpg"))
    real = Image.open(source)
    exif = exif_bytes(orientation=8, taken="2024:06:01 07:30:15", gps=(-2.5, 29.75))
    photo = read(encoded(real, "JPEG", exif=exif), source.name)
    assert photo.taken_at is not None and photo.taken_at.isoformat() == "2024-06-01T07:30:15"
    assert photo.latitude == pytest.approx(-2.5, abs=1e-4)
    assert photo.longitude == pytest.approx(29.75, abs=1e-4)
    assert (photo.width, photo.height) == (real.height, real.width)  # orientation 8 = 90°


def test_same_bytes_give_same_sha256_and_different_bytes_do_not() -> None:
    a, b = jpeg_bytes(color=(1, 2, 3)), jpeg_bytes(color=(9, 9, 9))
    assert read(a).sha256 == read(a).sha256 != read(b).sha256
