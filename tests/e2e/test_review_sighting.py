"""Browser checks of the per-sighting review page at desktop and phone width: every photo of
the animal, the "which individual?" box on `w`, a box redrawn by dragging, one decision for
all photos, Revert within reach at 390 px, and a queue that updates itself."""

from __future__ import annotations

from django.core.files.base import ContentFile

from catalogue.models import Annotation
from identification.models import Identification, IdentityDecision
from identification.services.pipeline import species_register
from tests.factories import (
    AnnotationFactory,
    EncounterFactory,
    ImageFactory,
    IndividualFactory,
    UserFactory,
    ranked_photo,
)
from tests.helpers import jpeg_bytes, wait_until


def sign_in(page, base: str, username: str, next_url: str) -> None:  # noqa: ANN001
    page.goto(f"{base}/accounts/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", "correct-horse-battery")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}{next_url}")


def chimpanzee_sighting():  # noqa: ANN201
    species = species_register(name="Chimpanzee", viewpoints=["left", "right", "face"])
    sagu, bili = (
        IndividualFactory(species=species, code=code, name=name)
        for code, name in (("SAGU", "Sagu"), ("BILI-0042", "Bili the long-named"))
    )
    sighting = EncounterFactory(species=species)
    photos = []
    for ranking in ([(sagu, 0.71), (bili, 0.42)], [(bili, 0.66), (sagu, 0.63)]):
        photo = ranked_photo(encounter=sighting, ranking=ranking)
        image = photo.image
        content = ContentFile(jpeg_bytes(size=(320, 240), color=(90, 70, 50)))
        image.file.save("chimp.jpg", content, save=False)
        image.width, image.height = 320, 240
        image.save()
        Annotation.objects.filter(pk=photo.pk).update(bbox_w=320, bbox_h=240)
        photos.append(photo)
    return species, sagu, bili, photos


def test_expert_reviews_a_sighting_once_at_desktop_and_phone_width(
    live_server, new_page, screenshot
) -> None:  # noqa: ANN001
    species, sagu, bili, (first, second) = chimpanzee_sighting()
    expert = UserFactory(role="expert", username="erin")
    review_url = f"/review/{first.pk}/"
    page = new_page(width=1280, height=900)
    sign_in(page, live_server.url, expert.username, review_url)
    assert page.locator(".animal-photo").count() == 2
    assert page.locator(".candidate h2").all_inner_texts()[:2] == [
        "#1 SAGU (Sagu)",
        "#2 BILI-0042 (Bili the long-named)",
    ]
    screenshot(page, "sighting-review-desktop")

    # w opens a visible "which individual?" search box
    assert not page.locator("#which-individual").is_visible()
    page.keyboard.press("w")
    assert page.locator("#which-individual").is_visible()
    assert page.evaluate("document.activeElement.id") == "which-individual-q"
    page.keyboard.type("bili")
    page.wait_for_selector("#which-individual-results >> text=It is BILI-0042")
    screenshot(page, "which-individual")
    page.keyboard.press("Escape")

    # a box redrawn by dragging on the first photo's canvas is stored in image pixels
    item = page.locator(f"#photo-{first.pk}")
    item.get_by_role("button", name="Redraw box").click()
    canvas = item.locator("canvas.box-editor").bounding_box()
    page.mouse.move(canvas["x"] + canvas["width"] * 0.25, canvas["y"] + canvas["height"] * 0.25)
    page.mouse.down()
    page.mouse.move(canvas["x"] + canvas["width"] * 0.5, canvas["y"] + canvas["height"] * 0.5)
    page.mouse.move(canvas["x"] + canvas["width"] * 0.75, canvas["y"] + canvas["height"] * 0.75)
    page.mouse.up()
    item.locator("select[name=viewpoint]").select_option("left")
    item.get_by_role("button", name="Save photo").click()
    page.wait_for_selector("text=The photo was corrected")
    corrected = Annotation.objects.get(pk=first.pk)
    assert corrected.viewpoint == "left"
    assert abs(corrected.bbox_x - 80) <= 3 and abs(corrected.bbox_y - 60) <= 3
    assert abs(corrected.bbox_w - 160) <= 3 and abs(corrected.bbox_h - 120) <= 3
    Identification.objects.filter(annotation=corrected).update(
        state=Identification.State.READY
    )  # as if re-ranked; the worker is not part of this test

    # one decision for both photos
    page.goto(f"{live_server.url}{review_url}")
    page.locator(".candidate").first.get_by_role("button", name="Same individual").click()
    page.wait_for_selector("text=Confirmed as SAGU")
    assert set(
        Annotation.objects.filter(pk__in=[first.pk, second.pk]).values_list("individual", flat=True)
    ) == {sagu.pk}
    assert IdentityDecision.objects.get().annotation_ids == [first.pk, second.pk]

    # the same page at phone width: nothing overflows, Revert is within reach
    phone = new_page(width=390, height=844)
    sign_in(phone, live_server.url, expert.username, f"/review/{second.pk}/")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    revert = phone.get_by_role("button", name="Revert")
    revert.scroll_into_view_if_needed()
    box = revert.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    screenshot(phone, "sighting-review-phone")
    revert.click()
    phone.wait_for_selector("text=The decision was reverted")
    assert set(
        Annotation.objects.filter(pk__in=[first.pk, second.pk]).values_list("individual", flat=True)
    ) == {None}
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390


def test_the_review_queue_updates_itself_while_photos_are_pending(
    live_server, new_page, screenshot
) -> None:  # noqa: ANN001
    species = species_register(name="Lynx")
    volunteer = UserFactory(role="volunteer", username="vic")
    photo = AnnotationFactory(image=ImageFactory(encounter=EncounterFactory(species=species)))
    identification = Identification.objects.create(annotation=photo)  # the model is working
    page = new_page(width=390, height=844)
    sign_in(page, live_server.url, volunteer.username, "/review/")
    assert page.locator("text=The model is working on 1 photo").is_visible()
    assert page.locator(".queue li").count() == 0
    identification.state = Identification.State.READY
    identification.save()
    page.wait_for_selector(f"a[href='/review/{photo.pk}/']", timeout=15_000)  # no reload
    wait_until(lambda: not page.locator("text=The model is working").count(), timeout=10)
    screenshot(page, "queue-updated-phone")
