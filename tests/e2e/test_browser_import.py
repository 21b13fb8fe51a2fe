"""Browser import of a shared dataset's ZIP layout: ``metadata.csv`` + ``images/<id>/<file>``."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

from catalogue.models import Annotation, Encounter
from identification.services.pipeline import species_register
from tests.factories import UserFactory

# Two chimpanzees photographed together (encounters shared by both) and one more.
INDIVIDUALS = ("Atra", "Sagu", "Louise")
PER_INDIVIDUAL = 4


def _shared_dataset_zip(source: Path, target: Path) -> tuple[Path, list[dict]]:
    """A ZIP in the shared layout from a few rows of a dataset; one row gets a date and box."""
    with open(source / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    together = {r["encounter"] for r in rows if r["identity"] == "Atra"} & {
        r["encounter"] for r in rows if r["identity"] == "Sagu"
    }
    chosen: list[dict] = []
    for identity in INDIVIDUALS:
        mine = sorted(
            (r for r in rows if r["identity"] == identity),
            key=lambda r: (r["encounter"] not in together, r["path"]),
        )
        chosen += mine[:PER_INDIVIDUAL]
    chosen[0] = {**chosen[0], "date": "2024-03-05", "bbox": "[10, 12, 100, 120]"}
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(chosen)
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("metadata.csv", text.getvalue())
        for row in chosen:
            archive.write(source / row["path"], row["path"])
    return target, chosen


def test_admin_imports_a_shared_dataset_zip_from_the_browser(
    live_server, celery_worker, new_page, screenshot, shared_datasets, tmp_path
) -> None:
    species = species_register(name="Chimpanzee")
    admin = UserFactory(role="admin", username="importer")
    archive, rows = _shared_dataset_zip(
        shared_datasets / "chimp_faces_demo", tmp_path / "chimps.zip"
    )
    page = new_page()
    page.goto(f"{live_server.url}/accounts/login/?next=/training/species/{species.pk}/")
    page.fill("#id_username", admin.username)
    page.fill("#id_password", "correct-horse-battery")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/training/species/{species.pk}/")

    page.set_input_files("#id_file", str(archive))
    page.evaluate("""() => {
      // Kept in sessionStorage: the tab then navigates to the import's page.
      const seen = [];
      const bar = document.querySelector('#import-progress');
      new MutationObserver(() => {
        seen.push(bar.value);
        sessionStorage.setItem('uploadProgress', JSON.stringify(seen));
      }).observe(bar, {attributes: true});
    }""")
    page.get_by_role("button", name="Check file").click()
    # The upload answers at once with the import's page; a bulk worker checks the file and the
    # page follows it (htmx) to the dry-run report.
    page.wait_for_url(f"{live_server.url}/training/imports/*/")
    page.wait_for_selector("#import-report", timeout=120_000)
    report = page.locator("#import-report").inner_text()
    assert "metadata.csv" in report and "3 (3 new, 0 existing)" in report
    assert "Atra, Sagu, Louise" in report or "Atra, Louise, Sagu" in report
    assert not Annotation.objects.exists()  # the dry run wrote nothing
    # The bar followed the upload.
    assert 100 in page.evaluate("JSON.parse(sessionStorage.getItem('uploadProgress'))")
    screenshot(page, "dry-run-report")

    page.get_by_role("button", name="Import", exact=True).click()
    page.wait_for_selector("text=Imported 12 animals", timeout=120_000)
    page.wait_for_selector(".import-state:text('Done')", timeout=300_000)  # all embedded
    screenshot(page, "imported")
    assert admin.notifications.filter(message__startswith="Your import into Chimpanzee is done")

    annotations = Annotation.objects.select_related("image__encounter", "individual")
    assert annotations.count() == len(rows) == 12
    assert {a.individual.code for a in annotations} == set(INDIVIDUALS)
    assert {a.viewpoint for a in annotations} == {"face"}
    # One encounter per encounter id of the CSV; Atra and Sagu photographed together share it.
    assert Encounter.objects.count() == len({r["encounter"] for r in rows})
    by_image = {a.image.original_filename: a for a in annotations}
    shared = [r["encounter"] for r in rows if r["identity"] == "Sagu"][0]
    atra, sagu = (
        next(
            by_image[Path(r["path"]).name]
            for r in rows
            if r["identity"] == who and r["encounter"] == shared
        )
        for who in ("Atra", "Sagu")
    )
    assert atra.image.encounter_id == sagu.image.encounter_id
    first = by_image[Path(rows[0]["path"]).name]
    assert (first.bbox_x, first.bbox_y, first.bbox_w, first.bbox_h) == (10, 12, 100, 120)
    assert first.image.encounter.observed_at.date().isoformat() == "2024-03-05"
