"""Ranking quality tools on real photos: evaluate, calibrate, identify."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from catalogue.services.imports import dataset_import, dataset_plan
from catalogue.services.species import species_create
from identification.models import EmbeddingJob, SpeciesModel
from identification.services.embedding import embedding_jobs_run

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def chimps(shared_datasets, django_capture_on_commit_callbacks):  # noqa: ANN001, ANN201
    species = species_create(name="Chimpanzee")
    plan = dataset_plan(
        metadata_csv=shared_datasets / "chimp_faces_demo" / "metadata.csv",
        species=species,
        max_individuals=5,
        images_per_individual=3,
    )
    with django_capture_on_commit_callbacks(execute=False):  # embed here, not on a worker
        dataset_import(plan=plan)
    embedding_jobs_run(job_ids=list(EmbeddingJob.objects.values_list("pk", flat=True)))
    return species


def run(*args: str) -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_evaluate_reports_leave_one_out_for_each_method(chimps) -> None:  # noqa: ANN001
    for method in ("embedding", "local", "fused"):
        report = run("evaluate", "--species", "Chimpanzee", "--method", method)
        assert report["n_queries"] == 15
        assert 0.2 <= report["top1"] <= 1.0  # 5 individuals: chance is 0.2 at top-1
        assert report["top5"] == 1.0  # the shortlist holds every individual
        assert report["top1"] <= report["mAP"] <= 1.0


def test_calibration_is_fitted_stored_and_separates_same_from_different(chimps) -> None:  # noqa: ANN001
    from reid.fusion import FusionCalibrator

    report = run("calibrate", "--species", "Chimpanzee")
    assert report["pairs"] == 15 * 5 and report["same_pairs"] == 15
    stored = SpeciesModel.objects.get(species=chimps).calibration
    assert stored == report["calibration"]
    calibrator = FusionCalibrator.from_dict(stored)
    assert calibrator.fitted_pairs == 75
    # More inliers and higher cosine must mean a higher probability of the same animal.
    low, high = calibrator.predict([0.3, 0.9], [2, 40])
    assert high > low


def test_identify_command_ranks_a_held_back_photo(chimps, shared_datasets) -> None:  # noqa: ANN001
    folder = sorted((shared_datasets / "chimp_faces_demo" / "images").iterdir())[0]
    photo = sorted(folder.glob("*.jpg"))[10]
    report = run("identify", str(photo), "--species", "Chimpanzee")
    codes = [c["code"] for c in report["candidates"]]
    assert len(codes) == 5 and folder.name in codes
    assert [c["rank"] for c in report["candidates"]] == [1, 2, 3, 4, 5]
