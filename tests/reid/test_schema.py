"""The ingestion schema: one grammar and one set of checks for boxes, dates, places and CSVs."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from reid.data import load_records
from reid.schema import (
    SchemaError,
    decode_text,
    parse_bbox,
    parse_bbox_list,
    parse_date,
    validate_bbox,
    validate_coordinates,
    validate_date,
)


@pytest.mark.parametrize("text", ["[1, 2, 3, 4]", "1,2,3,4", "1 2 3 4", " [1.0;2;3;4e0] "])
def test_every_box_grammar_reads_the_same_box(text: str) -> None:
    assert parse_bbox(text) == (1.0, 2.0, 3.0, 4.0)


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ("NaN,0,10,10", "finite"),
        ([0, 0, math.inf, 10], "finite"),
        ([True, 0, 10, 10], "number"),
        (["1", "2", "3", "4"], "numbers"),
        ("1,2,3", "4 numbers"),
        ([-1, 0, 10, 10], "outside"),
        ([0, 0, 0.5, 10], "smaller than one pixel"),
        ([90, 0, 20, 10], "outside the 100×80 photo"),
        ([100, 0, 1, 1], "outside the 100×80 photo"),
        ({"x": 1}, "must be"),
    ],
)
def test_bad_boxes_are_refused_with_a_reason(box: object, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        validate_bbox(box, width=100, height=80)


def test_a_box_overshooting_by_rounding_is_clipped_and_relative_boxes_stay_in_the_photo() -> None:
    assert validate_bbox([90.4, 0, 10, 80.6], width=100, height=80) == pytest.approx(
        (90.4, 0, 9.6, 80)
    )
    assert validate_bbox([0.5, 0.5, 0.5, 0.5], relative=True) == (0.5, 0.5, 0.5, 0.5)
    with pytest.raises(SchemaError, match="outside"):
        validate_bbox([0.5, 0.5, 0.9, 0.2], relative=True)


def test_upload_box_lists_allow_null_and_refuse_anything_else() -> None:
    assert parse_bbox_list([None, [1, 2, 3, 4]]) == [None, (1.0, 2.0, 3.0, 4.0)]
    assert parse_bbox_list("") == []
    for bad in ({"a": 1}, [[1, 2, 3]], ["1,2,3,4"], [[math.nan, 0, 1, 1]]):
        with pytest.raises(SchemaError):
            parse_bbox_list(bad)


def test_dates_lie_between_1900_and_tomorrow() -> None:
    assert parse_date("2024-05-01") == datetime(2024, 5, 1)
    assert parse_date("2024-05-01 10:00:00") == datetime(2024, 5, 1, 10)
    assert parse_date("2024:05:01 10:00:00") == datetime(2024, 5, 1, 10)
    assert parse_date("2024-05-01T10:00:00Z").utcoffset() == timedelta(0)
    assert parse_date("") is None
    validate_date(date.today() + timedelta(days=1))
    for bad in ("0001-01-01", "9999-12-31", "1899-12-31", (date.today() + timedelta(3))):
        with pytest.raises(SchemaError, match="1900"):
            parse_date(bad) if isinstance(bad, str) else validate_date(bad)
    with pytest.raises(SchemaError, match="ISO date"):
        parse_date("31/12/2020")


@pytest.mark.parametrize(
    ("latitude", "longitude", "message"),
    [
        (10, None, "both"),
        (None, 10, "both"),
        (91, 0, "-90 and 90"),
        (0, -181, "-180 and 180"),
        (math.nan, 0, "finite"),
        ("ten", 0, "number"),
    ],
)
def test_coordinates_come_together_and_in_range(latitude, longitude, message) -> None:  # noqa: ANN001
    with pytest.raises(SchemaError, match=message):
        validate_coordinates(latitude, longitude)


def test_text_encodings_are_detected_or_refused() -> None:
    assert decode_text("Zoë".encode()) == "Zoë"
    assert decode_text("\ufeffZoë".encode()) == "Zoë"
    assert decode_text("Zoë".encode("latin-1")) == "Zoë"
    assert decode_text("Zoë".encode("utf-16")) == "Zoë"
    with pytest.raises(SchemaError, match="not text"):
        decode_text(b"\x89PNG\r\n\x1a\n\x00\x00")


def test_load_records_reads_latin1_without_species_and_refuses_nan_boxes(tmp_path: Path) -> None:
    (tmp_path / "metadata.csv").write_bytes(
        "image_id,identity,path,viewpoint\n1,Zoë,a.jpg,Left\n".encode("latin-1")
    )
    [record] = load_records(tmp_path)
    assert (record.identity, record.species, record.viewpoint) == ("Zoë", tmp_path.name, "Left")
    (tmp_path / "metadata.csv").write_text('image_id,identity,path,bbox\n1,A,a.jpg,"nan,0,1,1"\n')
    with pytest.raises(SchemaError, match="line 2: .*finite"):
        load_records(tmp_path)
