"""Ranking quality tools on real photos: evaluate, calibrate, identify."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse

from catalogue.models import Species
from catalogue.services.imports import dataset_plan
from identification.models import EmbeddingJob, SpeciesModel
from identification.services.embedding_run import embedding_jobs_run
from identification.services.pipeline import dataset_ingest, species_register

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def chimps(shared_datasets, django_capture_on_commit_callbacks):  # noqa: ANN001, ANN201
    species = species_register(name="Chimpanzee")
    plan = dataset_plan(
        metadata_csv=shared_datasets / "chimp_faces_demo" / "metadata.csv",
        species=species,
        max_individuals=5,
        images_per_individual=3,
    )
    with django_capture_on_commit_callbacks(execute=False):  # embed here, not on a worker
        dataset_ingest(plan=plan)
    embedding_jobs_run(job_ids=list(EmbeddingJob.objects.values_list("pk", flat=True)))
    return species


def _chimp_sightings(shared_datasets, folder, species, twins, capture) -> Species:  # noqa: ANN001
    """5 chimpanzees × 3 sightings; with ``twins`` each sighting also holds a twin of its
    photo (the same pixels, another file), as a burst of near-identical frames would."""
    rows = ["image_id,identity,path,species,encounter"]
    folder.mkdir()
    for individual in sorted((shared_datasets / "chimp_faces_demo" / "images").iterdir())[:5]:
        for index, photo in enumerate(sorted(individual.glob("*.jpg"))[:3]):
            sighting = f"{individual.name}-s{index}"
            # Copies with bytes after the JPEG's end: the same pixels, another file (sha256
            # is unique across the catalogue).
            for copy in ("a", "b") if twins else ("a",):
                path = folder / f"{individual.name}-{index}{copy}.jpg"
                path.write_bytes(photo.read_bytes() + folder.name.encode() + copy.encode())
                rows.append(f"{path.stem},{individual.name},{path},x,{sighting}")
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    plan = dataset_plan(metadata_csv=folder / "metadata.csv", species=species)
    with capture(execute=False):  # embed here, not on a worker
        dataset_ingest(plan=plan)
    embedding_jobs_run(
        job_ids=list(
            EmbeddingJob.objects.filter(annotation__species=species).values_list("pk", flat=True)
        )
    )
    return species


def run(*args: str) -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_evaluation_never_lets_a_query_see_its_own_sighting(
    shared_datasets,
    tmp_path,
    django_capture_on_commit_callbacks,  # noqa: ANN001
) -> None:
    """With the twin in the gallery every query would find itself (top-1 1.0); the honest
    protocol drops the query's sighting, so each photo and its twin rank exactly as the
    photo alone does in a catalogue of the same 15 photos without twins."""
    from identification.models import Embedding
    from identification.services.matching import candidates_shortlist
    from identification.services.models import species_model_setting

    # Both settings (and their vector indexes) exist before any vector is stored.
    chimp_twins, chimps_alone = species_register(name="Chimpanzee"), species_register(name="Chimp")
    setting = species_model_setting(species=chimp_twins)
    species_model_setting(species=chimps_alone)
    _chimp_sightings(
        shared_datasets, tmp_path / "twins", chimp_twins, True, django_capture_on_commit_callbacks
    )
    _chimp_sightings(
        shared_datasets, tmp_path / "alone", chimps_alone, False, django_capture_on_commit_callbacks
    )
    query = Embedding.objects.filter(species=chimp_twins).order_by("annotation_id").first()
    leaky = candidates_shortlist(
        species_id=chimp_twins.pk,
        setting=setting,
        vector=np.asarray(query.vector),
        query_keypoints=None,
        exclude_annotation_ids={query.annotation_id},
    )
    assert leaky[0].cosine > 0.999  # the twin: what a leaky evaluation would rank first

    for method in ("embedding", "local"):
        twins = run("evaluate", "--species", "Chimpanzee", "--method", method)
        alone = run("evaluate", "--species", "Chimp", "--method", method)
        assert twins["n_queries"] == 30 and alone["n_queries"] == 15
        assert alone["top1"] < 1.0  # else the comparison would prove nothing
        # Equal up to near-ties: the copies' vectors come from different batches.
        assert twins["top1"] == pytest.approx(alone["top1"], abs=1 / 15)
        assert twins["mAP"] == pytest.approx(alone["mAP"], abs=0.03)


def test_evaluate_reports_leave_one_out_for_each_method(chimps) -> None:  # noqa: ANN001
    for method in ("embedding", "local", "fused", "calibrated"):
        report = run("evaluate", "--species", "Chimpanzee", "--method", method)
        assert report["n_queries"] == 15
        assert 0.2 <= report["top1"] <= 1.0  # 5 individuals: chance is 0.2 at top-1
        assert report["top5"] == 1.0  # the shortlist holds every individual
        assert report["top1"] <= report["mAP"] <= 1.0
        # Per sighting too: a sighting's photos of one individual ranked together.
        assert 1 <= report["n_sightings"] <= report["n_queries"]
        assert 0.0 <= report["sighting_top1"] <= 1.0 and report["sighting_top1_se"] >= 0.0


def test_calibration_is_fitted_stored_and_separates_same_from_different(chimps) -> None:  # noqa: ANN001
    from identification.models import Identification, ModelVersion
    from identification.services.matching import species_calibrator
    from reid.fusion import FusionCalibrator
    from tests.factories import AnnotationFactory

    waiting = Identification.objects.create(
        annotation=AnnotationFactory(image__encounter__species=chimps),
        state=Identification.State.READY,
    )
    report = run("calibrate", "--species", "Chimpanzee")
    assert report["pairs"] == 15 * 5 and report["same_pairs"] == 15
    waiting.refresh_from_db()  # ranked again under the adopted ranking
    assert (waiting.queue, waiting.sent_at) == ("bulk", None)
    setting = SpeciesModel.objects.get(species=chimps)
    assert setting.calibration == report["calibration"]
    calibrator = FusionCalibrator.from_dict(setting.calibration)
    assert calibrator.fitted_pairs == 75
    # More inliers and higher cosine must mean a higher probability of the same animal.
    low, high = calibrator.predict([0.3, 0.9], [2, 40])
    assert high > low
    # The adopted method is never worse than the best single method, and says why.
    top1 = report["top1"]
    assert top1[report["ranking_method"]] >= max(top1["embedding"], top1["local"])
    assert setting.ranking_method == report["ranking_method"] and report["decision"]
    open_set = report["open_set"]
    assert setting.new_individual_threshold == open_set["threshold"]
    # Held-out: 5 individuals, each judged at a threshold chosen on the other four.
    assert open_set["folds"] == 5 and (open_set["n_known"], open_set["n_unknown"]) == (15, 15)
    assert 0.0 <= open_set["BAKS"] <= 1.0 and 0.0 <= open_set["BAUS"] <= 1.0
    assert open_set["geometric_mean"] == pytest.approx(np.sqrt(open_set["BAKS"] * open_set["BAUS"]))
    assert setting.is_calibrated and species_calibrator(setting=setting) is not None
    # evaluate scores the stored threshold on the same simulation, on the photos it was
    # chosen on: the in-sample BAKS and BAUS, never below the held-out ones' mean.
    evaluated = run("evaluate", "--species", "Chimpanzee", "--open-set")
    assert evaluated["method"] == report["ranking_method"]
    assert evaluated["open_set"]["threshold"] == pytest.approx(open_set["threshold"])
    for key in ("BAKS", "BAUS", "geometric_mean"):
        assert evaluated["open_set"][key] == pytest.approx(open_set["in_sample"][key])
    assert open_set["in_sample"]["geometric_mean"] >= open_set["geometric_mean"] - 1e-9
    # Another model version never uses this version's fit (a switch, or a rollback).
    setting.model_version = ModelVersion.objects.create(
        name="other", backbone="tf_efficientnet_lite0", weights="imagenet", embedding_dim=1280
    )
    assert not setting.is_calibrated and species_calibrator(setting=setting) is None
    assert setting.probably_new_threshold == SpeciesModel.DEFAULT_NEW_INDIVIDUAL_THRESHOLD


def test_calibrate_stores_the_held_out_open_set_figures_and_the_dashboard_shows_them(
    chimps,
    client,  # noqa: ANN001
) -> None:
    from django.template.defaultfilters import floatformat

    from tests.factories import UserFactory

    client.force_login(UserFactory(role="expert"))
    before = client.get(reverse("dashboard")).content.decode()
    assert "not measured yet" in before and "threshold-default" in before

    report = run("calibrate", "--species", "Chimpanzee")["open_set"]
    stored = SpeciesModel.objects.get(species=chimps).method_choice["open_set"]
    assert stored == {
        key: report[key]
        for key in ("BAKS", "BAUS", "geometric_mean", "n_known", "n_unknown", "folds")
    }
    response = client.get(reverse("dashboard"))
    (row,) = response.context["species_rows"]
    assert row.open_set == stored and row.threshold == report["threshold"] and row.threshold_fitted
    text = response.content.decode()
    assert "not measured yet" not in text and "threshold-default" not in text
    for key in ("threshold", "BAKS", "BAUS", "geometric_mean"):
        assert floatformat(report[key], 3) in text  # as the template rounds it
    assert "15 known, 15 unknown queries" in text


def test_identify_command_ranks_a_held_back_photo(chimps, shared_datasets) -> None:  # noqa: ANN001
    folder = sorted((shared_datasets / "chimp_faces_demo" / "images").iterdir())[0]
    photo = sorted(folder.glob("*.jpg"))[10]
    report = run("identify", str(photo), "--species", "Chimpanzee")
    codes = [c["code"] for c in report["candidates"]]
    assert len(codes) == 5 and folder.name in codes
    assert [c["rank"] for c in report["candidates"]] == [1, 2, 3, 4, 5]


def test_a_species_can_rank_with_xfeat_and_caches_its_keypoints_apart(chimps) -> None:  # noqa: ANN001
    from identification.models import LocalFeatures

    sift_rows = LocalFeatures.objects.filter(method="sift").count()
    assert sift_rows == 15  # extracted with the embeddings, for the species' default method
    report = run("calibrate", "--species", "Chimpanzee", "--local-method", "xfeat")
    setting = SpeciesModel.objects.get(species=chimps)
    assert setting.local_method == report["local_method"] == "xfeat"
    assert setting.is_calibrated and setting.calibration["local_method"] == "xfeat"
    assert LocalFeatures.objects.filter(method="xfeat").count() == 15
    assert LocalFeatures.objects.filter(method="sift").count() == sift_rows  # kept apart
    evaluated = run("evaluate", "--species", "Chimpanzee", "--method", "local")
    assert evaluated["local_method"] == "xfeat" and evaluated["n_queries"] == 15
    assert evaluated["top1"] >= 0.2  # 5 individuals: chance is 0.2
    # Back to SIFT: the XFeat fit no longer applies.
    setting.local_method = "sift"
    assert not setting.is_calibrated


def test_evaluate_and_the_records_core_give_the_same_numbers(chimps) -> None:  # noqa: ANN001
    """``evaluate`` (pgvector + cached keypoints) and ``reid.evaluation.evaluate_records``
    (what the training report, ``reid eval`` and the benchmarks use) rank with the same code:
    on the same photos and vectors they agree for every method."""
    from identification.models import Embedding
    from reid.data import Record
    from reid.evaluation import PairMatcher, evaluate_records

    rows = list(
        Embedding.objects.filter(species=chimps)
        .select_related("annotation__image")
        .order_by("annotation_id")
    )
    records = [
        Record(
            image_id=str(e.annotation_id),
            identity=str(e.annotation.individual_id),
            species="chimp",
            path=e.annotation.image.file.path,
            encounter=str(e.annotation.image.encounter_id),
        )
        for e in rows
    ]
    vectors = np.asarray([e.vector for e in rows], dtype=np.float32)
    methods = ("embedding", "local", "fused")
    core = evaluate_records(records, vectors, methods, PairMatcher(records, "sift"))
    for method in methods:
        app = run("evaluate", "--species", "Chimpanzee", "--method", method)
        expected = core["per_species"]["chimp"][method]
        assert app["n_queries"] == expected["n_queries"] == 15
        assert app["top1"] == pytest.approx(expected["top1"]), (method, app, expected)
        assert app["mAP"] == pytest.approx(expected["mAP"])
