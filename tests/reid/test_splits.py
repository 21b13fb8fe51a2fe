"""Splits never leak an encounter and are deterministic."""

from __future__ import annotations

import random

from reid.splits import (
    closed_set_split,
    disjoint_identity_split,
    individual_folds,
    leave_one_species_out,
    open_set_split,
)
from tests.reid.conftest import make_records


def _records():
    rng = random.Random(1)
    spec = []
    for species in ("fish", "dog"):
        for identity in range(8):
            for encounter in range(rng.randint(1, 4)):
                for _ in range(rng.randint(1, 3)):
                    spec.append((species, f"id{identity}", f"enc{identity}-{encounter}"))
            spec.append((species, f"id{identity}", ""))  # no encounter: its own encounter
    spec.append(("fish", "id0", "group-photo"))
    spec.append(("fish", "id1", "group-photo"))  # one encounter with two individuals
    return make_records(spec)


def _encounters(records):
    return {r.encounter_key for r in records}


def test_disjoint_identity_split_has_disjoint_identities_and_encounters() -> None:
    records = _records()
    split = disjoint_identity_split(records, test_fraction=0.4, seed=3)
    assert {r.class_key for r in split.train}.isdisjoint({r.class_key for r in split.test})
    assert _encounters(split.train).isdisjoint(_encounters(split.test))
    assert len(split.train) + len(split.test) == len(records)
    assert {r.species for r in split.test} == {"fish", "dog"}


def test_closed_set_split_never_leaks_an_encounter() -> None:
    records = _records()
    split = closed_set_split(records, query_fraction=0.5, seed=0)
    assert _encounters(split.train).isdisjoint(_encounters(split.test))
    assert split.test
    database_ids = {r.class_key for r in split.train}
    assert all(r.class_key in database_ids for r in split.test)


def test_open_set_split_has_unknown_queries_and_no_leak() -> None:
    records = _records()
    split = open_set_split(records, unknown_fraction=0.3, query_fraction=0.3, seed=2)
    assert _encounters(split.train).isdisjoint(_encounters(split.test))
    database_ids = {r.class_key for r in split.train}
    assert any(r.class_key not in database_ids for r in split.test)
    assert any(r.class_key in database_ids for r in split.test)


def test_splits_are_deterministic_by_seed() -> None:
    records = _records()

    def ids(split) -> list[str]:  # noqa: ANN001
        return [r.image_id for r in split.test]

    assert ids(disjoint_identity_split(records, seed=5)) == ids(
        disjoint_identity_split(records, seed=5)
    )
    assert ids(closed_set_split(records, seed=5)) == ids(closed_set_split(records, seed=5))
    assert ids(disjoint_identity_split(records, seed=5)) != ids(
        disjoint_identity_split(records, seed=6)
    )


def test_leave_one_species_out() -> None:
    split = leave_one_species_out(_records(), "dog")
    assert {r.species for r in split.test} == {"dog"}
    assert {r.species for r in split.train} == {"fish"}


def test_individual_folds_deal_each_individual_once_seeded() -> None:
    individuals = [f"id{i}" for i in range(12)] * 3  # repeats: one query per photo
    folds = individual_folds(individuals, 5, seed=3)
    assert sorted(len(f) for f in folds) == [2, 2, 2, 3, 3]
    assert set().union(*folds) == set(individuals) and sum(map(len, folds)) == 12
    assert folds == individual_folds(reversed(individuals), 5, seed=3)  # order does not matter
    assert folds != individual_folds(individuals, 5, seed=4)
    # Fewer individuals than folds: each is a fold of its own.
    assert sorted(individual_folds(["a", "b", "a"], 5), key=sorted) == [{"a"}, {"b"}]
    assert individual_folds([], 5) == []
