"""Fixtures of the re-ID tests (no Django, no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reid.data import Record

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _few_torch_threads():
    """Keep tests light on the shared 2-core machine without changing library defaults."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def shared_datasets() -> Path:
    """Folder of the shared real datasets; skips the test when absent."""
    if not (SHARED_DATASETS / "fs48_fish" / "metadata.csv").exists():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


def make_records(spec: list[tuple[str, str, str]]) -> list[Record]:
    """Records from ``(species, identity, encounter)`` triples (paths are fake)."""
    return [
        Record(
            image_id=f"img{i}",
            identity=identity,
            species=species,
            path=f"/fake/{i}.jpg",
            encounter=encounter,
            dataset="synthetic",
        )
        for i, (species, identity, encounter) in enumerate(spec)
    ]
