"""Vector search latency and recall@10 at scale, with the species filter.

Synthetic vectors: ``--species`` species of uneven sizes (Zipf-like), each a set of
individuals whose vectors scatter around a centre; 80% of annotations are identified. The
search is the app's own (``nearest_identified_annotations``: per-species partial HNSW index).
Recall@10 is against an exact cosine top-10 of the same species' identified annotations.

Usage (own database on the embedded Postgres; dropped first):
    .venv/bin/python benchmarks/identification/search.py --vectors 100000 --dim 1280
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--species", type=int, default=50)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--database", default="wildweb_bench_search")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Search a database loaded by an earlier run with the same arguments.",
    )
    args = parser.parse_args()

    _use_database(args.database, fresh=not args.reuse)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    rng = np.random.default_rng(0)
    sizes = _species_sizes(args.vectors, args.species)
    started = time.perf_counter()
    vectors, species_of, identified, version_id, species_ids, annotation_ids = _load(
        connection, rng, sizes, args.dim, write=not args.reuse
    )
    load_s = time.perf_counter() - started

    from identification.models import ModelVersion
    from identification.services.search import embedding_index_ensure

    version = ModelVersion.objects.get(pk=version_id)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '2GB'")
        for species_id in species_ids:
            embedding_index_ensure(species_id=species_id, version=version)
        cursor.execute("ANALYZE identification_embedding")
    index_s = time.perf_counter() - started
    # Warm the caches as a running server would have them.
    from identification.selectors.search import nearest_identified_annotations as search

    for species_id in species_ids:
        search(
            species_id=species_id, version_id=version_id, dim=args.dim, vector=vectors[0], k=args.k
        )

    from identification.selectors.search import nearest_identified_annotations

    latencies, recalls, write_latencies = [], [], []
    for q in range(args.queries):
        species_index = q % args.species  # small and large species alike
        members = np.flatnonzero(species_of == species_index)
        base = vectors[rng.choice(members)]
        query = base + 0.3 * rng.normal(size=args.dim).astype(np.float32) / np.sqrt(args.dim)
        query /= np.linalg.norm(query)
        t0 = time.perf_counter()
        found = nearest_identified_annotations(
            species_id=species_ids[species_index],
            version_id=version_id,
            dim=args.dim,
            vector=query,
            k=args.k,
        )
        latencies.append((time.perf_counter() - t0) * 1000)
        write_latencies.append(_timed_write(species_ids[species_index], version_id, query, found))
        known = members[identified[members]]
        exact = known[np.argsort(-(vectors[known] @ query))[: args.k]]
        exact_ids = {annotation_ids[i] for i in exact}
        recalls.append(len(exact_ids & {n.annotation_id for n in found}) / max(len(exact_ids), 1))

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        database_bytes = cursor.fetchone()[0]
        cursor.execute(
            "SELECT coalesce(sum(pg_relation_size(indexrelid)), 0) FROM pg_index "
            "JOIN pg_class ON pg_class.oid = indexrelid WHERE relname LIKE 'emb_hnsw_%'"
        )
        index_bytes = cursor.fetchone()[0]
    result = {
        "vectors": args.vectors,
        "dim": args.dim,
        "species": args.species,
        "largest_species": int(sizes.max()),
        "smallest_species": int(sizes.min()),
        "queries": args.queries,
        "k": args.k,
        "load_s": round(load_s, 1),
        "index_build_s": round(index_s, 1),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 2),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 2),
        "recall_at_10_mean": round(float(np.mean(recalls)), 4),
        "recall_at_10_min": round(float(np.min(recalls)), 4),
        "database_mb": round(database_bytes / 2**20),
        "hnsw_indexes_mb": round(index_bytes / 2**20),
        "latencies_ms": [round(x, 2) for x in latencies],
        "write_ms_p50": round(float(np.percentile(write_latencies, 50)), 2),
        "write_ms_p95": round(float(np.percentile(write_latencies, 95)), 2),
        "write_latencies_ms": [round(x, 2) for x in write_latencies],
    }
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("latencies_ms")}, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


def _timed_write(species_id: int, version_id: int, vector: np.ndarray, found: list) -> float:
    """Milliseconds to store what an upload's search stores, committed: the new annotation, its
    vector (HNSW maintenance included) and its search with 10 candidates. Removed afterwards."""
    from django.db import transaction

    from catalogue.models import Annotation
    from identification.models import Embedding, Identification, MatchCandidate

    image_id = Annotation.objects.filter(species_id=species_id).values_list("image_id", flat=True)[
        0
    ]
    started = time.perf_counter()
    with transaction.atomic():
        annotation = Annotation.objects.create(
            image_id=image_id, species_id=species_id, bbox_x=0, bbox_y=0, bbox_w=1, bbox_h=1
        )
        Embedding.objects.create(
            annotation=annotation, model_version_id=version_id, species_id=species_id, vector=vector
        )
        identification = Identification.objects.create(annotation=annotation, state="ready")
        MatchCandidate.objects.bulk_create(
            MatchCandidate(
                identification=identification,
                rank=rank,
                individual_id=neighbour.individual_id,
                gallery_annotation_id=neighbour.annotation_id,
                embedding_score=neighbour.cosine,
                inlier_count=0,
                score=neighbour.cosine,
                fused_score=0.5,
            )
            for rank, neighbour in enumerate(found, start=1)
        )
    elapsed = (time.perf_counter() - started) * 1000
    annotation.delete()
    return elapsed


def _species_sizes(total: int, species: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, species + 1) ** 0.8
    floor = min(20, total // (2 * species))  # small galleries: smaller smallest species
    sizes = np.maximum((weights / weights.sum() * total).astype(int), floor)
    sizes[0] += total - sizes.sum()
    return sizes


def _use_database(name: str, fresh: bool = True) -> None:
    """Point Django at database ``name`` on the configured (or embedded) server."""
    import psycopg

    from wildweb.embedded import postgres_url

    base = os.environ.get("DATABASE_URL") or postgres_url()
    if fresh:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
    prefix, _, rest = base.partition("?")
    os.environ["DATABASE_URL"] = (
        prefix.rsplit("/", 1)[0] + f"/{name}" + (f"?{rest}" if rest else "")
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wildweb.settings")
    os.environ["DB_STATEMENT_TIMEOUT_MS"] = "0"  # index builds take minutes
    # As in production: with DEBUG on, Django keeps the text of the last 9,000 queries, and a
    # bulk write of keypoints is megabytes of SQL (the importing process reached 3 GB).
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("SECRET_KEY", "benchmark-only")


def _load(connection, rng, sizes, dim, write=True):  # noqa: ANN001, ANN202
    """Bulk-load species, individuals, annotations and embeddings with COPY.

    The vectors come from ``rng`` alone, so ``write=False`` regenerates those of an earlier
    load (for exact recall) without writing.
    """
    from pgvector.psycopg import register_vector

    from identification.services.models import zero_shot_version

    version = zero_shot_version()
    version.embedding_dim = dim
    if write:
        version.save()
    raw = connection.connection
    register_vector(raw)
    vectors, species_of, identified, species_ids, annotation_ids = [], [], [], [], []
    next_annotation = next_individual = 1
    with raw.cursor() as cursor:
        for index, size in enumerate(sizes):
            individuals = max(size // 5, 2)
            centres = rng.normal(size=(individuals, dim)).astype(np.float32)
            owner = rng.integers(0, individuals, size=size)
            species_vectors = centres[owner] + 0.7 * rng.normal(size=(size, dim)).astype(np.float32)
            species_vectors /= np.linalg.norm(species_vectors, axis=1, keepdims=True)
            known = rng.random(size) < 0.8
            if not write:
                cursor.execute("SELECT id FROM catalogue_species WHERE slug = %s", [f"s{index}"])
                species_ids.append(cursor.fetchone()[0])
            else:
                species_ids.append(
                    _write_species(
                        cursor,
                        index,
                        size,
                        individuals,
                        owner,
                        known,
                        species_vectors,
                        version,
                        next_annotation,
                        next_individual,
                    )
                )
            vectors.append(species_vectors)
            species_of.extend([index] * size)
            identified.append(known)
            annotation_ids.extend(range(next_annotation, next_annotation + size))
            next_annotation += size
            next_individual += individuals
        if write:
            for table in ("catalogue_individual", "catalogue_annotation"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
    raw.commit()
    return (
        np.concatenate(vectors),
        np.asarray(species_of),
        np.concatenate(identified),
        version.pk,
        species_ids,
        np.asarray(annotation_ids),
    )


def _write_species(
    cursor,
    index,
    size,
    individuals,
    owner,
    known,
    species_vectors,
    version,  # noqa: ANN001, ANN202, PLR0913
    next_annotation,
    next_individual,
):
    cursor.execute(
        "INSERT INTO catalogue_species (name, slug, sensitive, viewpoints, same_viewpoint_only, "
        "created_at) VALUES (%s, %s, false, '[]', false, now()) RETURNING id",
        [f"S{index}", f"s{index}"],
    )
    species_id = cursor.fetchone()[0]
    cursor.execute(
        "INSERT INTO catalogue_encounter (species_id, status, notes, created_at) "
        "VALUES (%s, 'identified', '', now()) RETURNING id",
        [species_id],
    )
    encounter_id = cursor.fetchone()[0]
    cursor.execute(
        "INSERT INTO catalogue_image (encounter_id, file, sha256, width, height, "
        "original_filename, thumbnail, created_at) VALUES (%s, 'x.jpg', %s, 1, 1, '', '', now()) "
        "RETURNING id",
        [encounter_id, f"{species_id:064x}"],
    )
    image_id = cursor.fetchone()[0]
    with cursor.copy(
        "COPY catalogue_individual (id, species_id, code, name, sex, notes, "
        "is_public, created_at) FROM STDIN"
    ) as copy:
        for i in range(individuals):
            copy.write_row(
                (next_individual + i, species_id, f"I{i}", "", "unknown", "", True, "2025-01-01")
            )
    with cursor.copy(
        "COPY catalogue_annotation (id, image_id, species_id, bbox_x, bbox_y, "
        "bbox_w, bbox_h, theta, viewpoint, animal_index, individual_id, identity_source, "
        "created_at) FROM STDIN"
    ) as copy:
        for j in range(size):
            copy.write_row(
                (
                    next_annotation + j,
                    image_id,
                    species_id,
                    0,
                    0,
                    1,
                    1,
                    0,
                    "",
                    0,
                    next_individual + int(owner[j]) if known[j] else None,
                    "import" if known[j] else "",
                    "2025-01-01",
                )
            )
    with cursor.copy(
        "COPY identification_embedding (annotation_id, model_version_id, "
        "species_id, vector, created_at) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "int8", "int8", "vector", "timestamptz"])
        import datetime as dt

        stamp = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
        for j in range(size):
            copy.write_row((next_annotation + j, version.pk, species_id, species_vectors[j], stamp))
    return species_id


if __name__ == "__main__":
    main()
