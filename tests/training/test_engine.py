"""The worker side of a run: which held-out individuals decide early stopping."""

from __future__ import annotations

from reid.data import Record
from training.services.training_data import VALIDATION_MIN_INDIVIDUALS, _validation_split


def _held_out(individuals: int) -> list[Record]:
    return [
        Record(
            image_id=f"{i}-{n}",
            identity=f"ind{i}",
            species="zebra",
            path=f"/x/{i}-{n}.jpg",
            encounter=f"e{i}-{n}",
            dataset="zebra",
        )
        for i in range(individuals)
        for n in range(3)
    ]


def test_a_third_of_enough_held_out_individuals_decide_early_stopping_and_are_not_reported() -> (
    None
):
    validation, reported = _validation_split(_held_out(12), seed=0)
    chosen = {r.identity for r in validation}
    assert len(chosen) == 4 and not chosen & {r.identity for r in reported}
    assert len({r.identity for r in reported}) == 8 and len(validation) == 12
    assert _validation_split(_held_out(12), seed=0) == (validation, reported)  # seeded


def test_too_few_held_out_individuals_leave_no_early_stopping_set() -> None:
    held = _held_out(2 * VALIDATION_MIN_INDIVIDUALS - 1)
    assert _validation_split(held, seed=0) == ([], held)
    validation, _ = _validation_split(_held_out(2 * VALIDATION_MIN_INDIVIDUALS), seed=0)
    assert len({r.identity for r in validation}) == VALIDATION_MIN_INDIVIDUALS
