"""Drawing a box around the animal on the upload preview, with a real mouse and a real finger.

Chromium used to start a native drag of the preview image and cancel the pointer, so the box
stayed a tiny square and ``bboxes=[null]`` was saved.
"""

from __future__ import annotations

from pathlib import Path

from catalogue.models import Annotation
from tests.e2e.conftest import fits_phone_width, sign_in
from tests.factories import SpeciesFactory, UserFactory
from tests.helpers import jpeg_bytes

PHOTO_SIZE = (400, 300)
# Corners of the intended box, as fractions of the photo's width and height.
FROM, TO = (0.1, 0.1), (0.5, 0.5)
TOLERANCE_PX = 4  # rounding of screen pixels to photo pixels


def _photo(tmp_path: Path, name: str, color: tuple[int, int, int]) -> Path:
    path = tmp_path / name
    path.write_bytes(jpeg_bytes(size=PHOTO_SIZE, color=color))
    return path


def _choose_photo_and_fill(page, photo: Path) -> dict:
    page.select_option("#id_species", label="Wolf")
    page.fill("#id_observed_at", "2025-05-04T06:30")
    page.set_input_files("#id_photos", str(photo))
    canvas = page.locator("#previews .preview canvas.box-canvas")
    canvas.wait_for()
    page.wait_for_function(
        "document.querySelector('#previews .preview img').complete"
        " && document.querySelector('#previews .preview img').naturalWidth > 0"
    )
    canvas.scroll_into_view_if_needed()
    return canvas.bounding_box()


def _expected_box() -> tuple[float, float, float, float]:
    width, height = PHOTO_SIZE
    return (
        FROM[0] * width,
        FROM[1] * height,
        (TO[0] - FROM[0]) * width,
        (TO[1] - FROM[1]) * height,
    )


def _submit_and_stored_box(page, username: str) -> tuple[float, float, float, float]:
    page.get_by_role("button", name="Submit sighting").click()
    page.wait_for_selector("text=Thank you! Sighting")
    return Annotation.objects.get(image__encounter__submitted_by__username=username).bbox


def _assert_close(stored: tuple, expected: tuple) -> None:
    assert all(abs(s - e) <= TOLERANCE_PX for s, e in zip(stored, expected, strict=True)), (
        stored,
        expected,
    )


def test_a_box_dragged_with_the_mouse_is_stored_on_the_annotation(
    live_server, new_page, screenshot, tmp_path
) -> None:
    SpeciesFactory(name="Wolf")
    UserFactory(role="volunteer", username="mouse-drawer")
    page = new_page()
    sign_in(page, live_server.url, "mouse-drawer", "/sightings/new/")
    area = _choose_photo_and_fill(page, _photo(tmp_path, "wolf.jpg", (90, 90, 90)))
    assert page.locator("#previews img").get_attribute("draggable") == "false"

    page.mouse.move(area["x"] + FROM[0] * area["width"], area["y"] + FROM[1] * area["height"])
    page.mouse.down()
    page.mouse.move(area["x"] + TO[0] * area["width"], area["y"] + TO[1] * area["height"], steps=12)
    page.mouse.up()
    assert page.locator("#previews canvas").get_attribute("data-box")
    screenshot(page, "box-drawn-with-mouse")
    _assert_close(_submit_and_stored_box(page, "mouse-drawer"), _expected_box())


def test_a_box_drawn_with_a_finger_on_a_phone_is_stored(
    live_server, browser, screenshot, tmp_path
) -> None:
    SpeciesFactory(name="Wolf")
    UserFactory(role="volunteer", username="finger-drawer")
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True
    )
    context.set_default_timeout(30_000)
    context.route("**/tile.openstreetmap.org/**", lambda route: route.abort())
    page = context.new_page()
    try:
        sign_in(page, live_server.url, "finger-drawer", "/sightings/new/")
        area = _choose_photo_and_fill(page, _photo(tmp_path, "wolf-phone.jpg", (60, 80, 60)))
        # Real touch input through Chromium's input pipeline (not synthetic DOM events); the
        # box is in viewport coordinates, as touch points are.
        cdp = context.new_cdp_session(page)

        def touch(kind: str, fx: float, fy: float) -> None:
            point = {"x": area["x"] + fx * area["width"], "y": area["y"] + fy * area["height"]}
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [point]})

        touch("touchStart", *FROM)
        for step in range(1, 11):
            fraction = step / 10
            touch(
                "touchMove",
                FROM[0] + (TO[0] - FROM[0]) * fraction,
                FROM[1] + (TO[1] - FROM[1]) * fraction,
            )
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        page.wait_for_function("document.querySelector('#previews canvas').dataset.box")
        assert fits_phone_width(page)
        screenshot(page, "box-drawn-with-finger-phone")
        _assert_close(_submit_and_stored_box(page, "finger-drawer"), _expected_box())
    finally:
        context.close()
