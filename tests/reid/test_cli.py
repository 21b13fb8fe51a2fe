"""The ``reid`` command line on a small real subset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reid.cli import main
from reid.data import load_records, subset_records, write_metadata
from reid.inference import load_model


@pytest.fixture
def chimp_subset(shared_datasets: Path, tmp_path: Path) -> Path:
    records = subset_records(
        load_records(shared_datasets / "chimp_faces_demo"), identities=4, max_per_identity=5, seed=3
    )
    write_metadata(records, tmp_path / "chimps")
    return tmp_path / "chimps"


def _independent_leave_one_out_top1(vectors: np.ndarray, identities: list[str]) -> float:
    hits = []
    for q in range(len(vectors)):
        others = [g for g in range(len(vectors)) if g != q]
        if not any(identities[g] == identities[q] for g in others):
            continue
        best = max(others, key=lambda g: float(vectors[q] @ vectors[g]))
        hits.append(identities[best] == identities[q])
    return float(np.mean(hits))


def test_eval_imagenet_leave_one_out_agrees_with_independent_computation(
    chimp_subset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "eval",
                "--data",
                str(chimp_subset),
                "--model",
                "imagenet",
                "--protocol",
                "leave-one-out",
                "--image-size",
                "96",
                "--json",
            ]
        )
        == 0
    )
    reported = json.loads(capsys.readouterr().out)
    assert {"top1", "top5", "mAP", "n_queries", "per_species"} <= set(reported)
    records = load_records(chimp_subset)
    vectors = load_model("imagenet", device="cpu", image_size=96).embed_records(records)
    expected = _independent_leave_one_out_top1(vectors, [r.identity for r in records])
    assert reported["n_queries"] == len(records)
    assert abs(reported["top1"] - expected) <= 0.03


def test_eval_subset_options_and_other_protocols(
    shared_datasets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "eval",
        "--data",
        str(shared_datasets / "fs48_fish"),
        "--identities",
        "3",
        "--max-per-identity",
        "4",
        "--image-size",
        "64",
        "--json",
    ]
    assert main([*args, "--method", "fused"]) == 0
    fused = json.loads(capsys.readouterr().out)
    assert fused["n_images"] == 12 and 0.0 <= fused["top1"] <= 1.0
    assert fused["n_queries"] == fused["per_species"]["fish"]["n_queries"] > 0
    assert main([*args, "--protocol", "open-set", "--method", "local"]) == 0
    opened = json.loads(capsys.readouterr().out)["per_species"]["fish"]["open_set"]
    assert opened["n_unknown"] == opened["n_known"] > 0
    assert 0.0 <= opened["BAKS"] <= 1.0 and 0.0 <= opened["BAUS"] <= 1.0
    assert opened["geometric_mean"] == pytest.approx((opened["BAKS"] * opened["BAUS"]) ** 0.5)


def test_embed_writes_vectors_and_ids(
    chimp_subset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "vectors.npz"
    assert (
        main(
            [
                "embed",
                "--data",
                str(chimp_subset),
                "--out",
                str(out),
                "--image-size",
                "64",
                "--json",
            ]
        )
        == 0
    )
    with np.load(out) as archive:
        assert archive["embeddings"].shape == (20, 1280)
        assert len(archive["image_ids"]) == 20
        np.testing.assert_allclose(np.linalg.norm(archive["embeddings"], axis=1), 1, rtol=1e-5)


def test_match_ranks_the_query_identity_first(chimp_subset: Path) -> None:
    records = load_records(chimp_subset)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "reid",
            "match",
            records[0].path,
            str(chimp_subset),
            "--image-size",
            "64",
            "--top",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    candidates = json.loads(completed.stdout)["candidates"]
    assert candidates[0]["identity"] == records[0].class_key  # the query itself is in the gallery
    assert candidates[0]["cosine"] == pytest.approx(1.0, abs=1e-4)
