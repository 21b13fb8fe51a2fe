"""Leakage-free train/test splits.

The unit of splitting is the encounter (near-identical frames of one clip, camera sequence or
photo): an encounter never lands on both sides. Images without an encounter are their own
encounter. Every split is deterministic given its seed. :func:`individual_folds` deals
individuals themselves into folds (choosing the "probably new" threshold on some individuals
and judging it on the others).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from reid.data import Record


@dataclass
class Split:
    """Two disjoint lists of records (``train``/``test`` or ``database``/``query``)."""

    train: list[Record]
    test: list[Record]


def _components(records: Sequence[Record]) -> dict[int, list[int]]:
    """Group record indices so that records sharing an identity or an encounter stay together."""
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_of: dict[str, int] = {}
    for index, record in enumerate(records):
        for key in (f"class:{record.class_key}", f"enc:{record.encounter_key}"):
            if key in first_of:
                parent[find(index)] = find(first_of[key])
            else:
                first_of[key] = index
    groups: dict[int, list[int]] = defaultdict(list)
    for index in range(len(records)):
        groups[find(index)].append(index)
    return groups


def disjoint_identity_split(
    records: Sequence[Record], test_fraction: float = 0.5, seed: int = 0
) -> Split:
    """Split by individual: test identities are never seen in training.

    Identities linked by a shared encounter (e.g. a group photo) move together, so no
    encounter spans both sides. The fraction is applied per species.

    Args:
        records: all records.
        test_fraction: share of identities (per species) in the test side.
        seed: random seed.

    Returns:
        The split.
    """
    rng = random.Random(seed)
    groups = _components(records)
    by_species: dict[str, list[tuple[str, list[int]]]] = defaultdict(list)
    for members in groups.values():
        name = min(records[i].class_key for i in members)
        by_species[records[members[0]].species].append((name, members))
    test_indices: set[int] = set()
    for species in sorted(by_species):
        components = sorted(by_species[species])
        rng.shuffle(components)
        n_test = int(round(test_fraction * len(components)))
        if len(components) >= 2:
            n_test = min(max(n_test, 1), len(components) - 1)
        for _, members in components[:n_test]:
            test_indices.update(members)
    return Split(
        train=[r for i, r in enumerate(records) if i not in test_indices],
        test=[r for i, r in enumerate(records) if i in test_indices],
    )


def leave_one_species_out(records: Sequence[Record], species: str) -> Split:
    """Train on every species but ``species``, test on ``species``.

    Args:
        records: all records.
        species: the held-out species.

    Returns:
        The split.
    """
    return Split(
        train=[r for r in records if r.species != species],
        test=[r for r in records if r.species == species],
    )


def closed_set_split(
    records: Sequence[Record], query_fraction: float = 0.3, seed: int = 0
) -> Split:
    """Per identity, put some encounters in the query side and the rest in the database.

    Identities with a single encounter stay entirely in the database (they cannot be queried
    without leakage). Every queried identity keeps ≥ 1 encounter in the database.

    Args:
        records: all records.
        query_fraction: share of each identity's encounters used as queries.
        seed: random seed.

    Returns:
        ``Split(train=database, test=query)``.
    """
    rng = random.Random(seed)
    encounters: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for index, record in enumerate(records):
        encounters[record.class_key][record.encounter_key].append(index)
    query: set[int] = set()
    for class_key in sorted(encounters):
        keys = sorted(encounters[class_key])
        if len(keys) < 2:
            continue
        rng.shuffle(keys)
        n_query = min(max(int(round(query_fraction * len(keys))), 1), len(keys) - 1)
        for key in keys[:n_query]:
            query.update(encounters[class_key][key])
    query |= _shared_encounter_closure(records, query)
    return Split(
        train=[r for i, r in enumerate(records) if i not in query],
        test=[r for i, r in enumerate(records) if i in query],
    )


def open_set_split(
    records: Sequence[Record],
    unknown_fraction: float = 0.3,
    query_fraction: float = 0.3,
    seed: int = 0,
) -> Split:
    """Database of known individuals; queries of known individuals plus unseen ones.

    Args:
        records: all records.
        unknown_fraction: share of identities (per species) absent from the database.
        query_fraction: share of each known identity's encounters used as queries.
        seed: random seed.

    Returns:
        ``Split(train=database, test=query)``; queries whose identity is not in the database
        are the "new individual" cases.
    """
    identity_split = disjoint_identity_split(records, unknown_fraction, seed)
    known = closed_set_split(identity_split.train, query_fraction, seed)
    return Split(train=known.train, test=known.test + identity_split.test)


def individual_folds(
    individuals: Iterable[Hashable], folds: int, seed: int = 0
) -> list[set[Hashable]]:
    """Deal distinct individuals into folds for cross-validation by individual.

    The individuals (each counted once, however often it occurs) are shuffled with ``seed``
    and dealt in turn, so fold sizes differ by at most one. With fewer individuals than
    ``folds``, each individual is a fold of its own.

    Args:
        individuals: individual keys (repeats allowed).
        folds: folds wanted (at least 1).
        seed: random seed.

    Returns:
        ``min(folds, distinct individuals)`` disjoint, non-empty sets of individuals.
    """
    distinct = sorted(set(individuals), key=repr)
    random.Random(seed).shuffle(distinct)
    count = min(max(folds, 1), len(distinct))
    return [set(distinct[i::count]) for i in range(count)]


def _shared_encounter_closure(records: Sequence[Record], chosen: set[int]) -> set[int]:
    """Indices that share an encounter with any chosen index (keeps encounters whole)."""
    keys = {records[i].encounter_key for i in chosen}
    return {i for i, r in enumerate(records) if r.encounter_key in keys}
