"""Upload → candidates as the gallery grows: time per stage and index size, plotted.

Stages of one upload's search, timed for ``--queries`` real photos (cows, then dogs):

* ``decode``: the upload's checks, EXIF-upright and stored JPEG (``catalogue.photos.photo_read``)
  and the worker's decode of the stored file;
* ``embed``: the default path (ONNX Runtime), batch of one, then the 256-d PCA-whitening
  (fitted here on 1,500 other cow and dog photos);
* ``search``: the app's index-backed search, measured by ``search.py`` at each gallery size;
* ``local``: SIFT keypoints of the query and matching against the shortlist's photos (10
  individuals × ``photos_per_candidate("sift")`` real photos of the query's species, their
  keypoints read from bytes as the app stores them);
* ``writes``: the annotation, its vector (HNSW maintenance included) and 10 candidates,
  committed, measured by ``search.py`` at each gallery size.

Only search and writes touch the gallery; the other stages do not depend on its size (the
shortlist has a fixed length). Query ``i``'s total is the sum of the ``i``-th sample of every
stage, so p50/p95 are of whole uploads.

    .venv/bin/python benchmarks/identification/search.py --vectors 1000 --dim 256 \
        --database wildweb_bench_g1k --out benchmarks/results/search-1k-256.json
    # ... likewise 10000, 100000, 1000000 ...
    .venv/bin/python benchmarks/identification/growth.py benchmarks/results/search-*-256.json \
        --out benchmarks/results/growth.json --plot benchmarks/results/growth.png
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
STAGES = ("decode", "embed", "search", "local", "writes")


def stage_samples(queries: int) -> dict[str, list[float]]:
    """Milliseconds per stage that does not depend on the gallery, per real upload."""
    from catalogue.photos import photo_read
    from reid.compaction import Compaction
    from reid.data import load_image, load_records
    from reid.inference import load_model
    from reid.local_features import Keypoints, extract, match
    from reid.ranking import photos_per_candidate

    embedder = load_model("imagenet")
    per_candidate = photos_per_candidate("sift")
    samples: dict[str, list[float]] = {"decode": [], "embed": [], "local": []}
    for folder in ("holstein2025_cowfaces", "dogfacenet"):
        records = load_records(SHARED / folder)
        rng = np.random.default_rng(0)
        order = rng.permutation(len(records))
        fit = [records[i] for i in order[queries : queries + 750]]
        compaction = Compaction.fit(embedder.embed_records(fit), dim=256, whiten=True)
        gallery = [records[i] for i in order[-10 * per_candidate :]]
        stored = [extract(load_image(r), method="sift").to_bytes() for r in gallery]
        embedder.embed_images([load_image(gallery[0])])  # warm
        for record in (records[i] for i in order[: queries // 2]):
            data = Path(record.path).read_bytes()
            started = time.perf_counter()
            photo = photo_read(data=data, filename="x.jpg", max_bytes=50 << 20, max_pixels=10**8)
            crop = Image.open(io.BytesIO(photo.content)).convert("RGB")  # as the worker opens it
            decoded = time.perf_counter()
            compaction.apply(embedder.embed_images([crop]))
            embedded = time.perf_counter()
            query = extract(crop, method="sift")
            for blob in stored:
                match(query, Keypoints.from_bytes(blob))
            matched = time.perf_counter()
            samples["decode"].append((decoded - started) * 1000)
            samples["embed"].append((embedded - decoded) * 1000)
            samples["local"].append((matched - embedded) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("search_results", nargs="+", type=Path, help="search.py --out files")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plot", type=Path, required=True)
    args = parser.parse_args()
    fixed = stage_samples(args.queries)
    rows = []
    for path in args.search_results:
        search = json.loads(path.read_text())
        n = min(len(fixed["decode"]), len(search["latencies_ms"]))
        stages = {
            **{name: np.asarray(values[:n]) for name, values in fixed.items()},
            "search": np.asarray(search["latencies_ms"][:n]),
            "writes": np.asarray(search["write_latencies_ms"][:n]),
        }
        total = sum(stages[name] for name in STAGES)
        rows.append(
            {
                "vectors": search["vectors"],
                "dim": search["dim"],
                "queries": n,
                "total_ms_p50": round(float(np.percentile(total, 50)), 1),
                "total_ms_p95": round(float(np.percentile(total, 95)), 1),
                "stage_ms_median": {k: round(float(np.median(v)), 1) for k, v in stages.items()},
                "stage_ms_p95": {
                    k: round(float(np.percentile(v, 95)), 1) for k, v in stages.items()
                },
                "hnsw_indexes_mb": search["hnsw_indexes_mb"],
                "database_mb": search["database_mb"],
                "recall_at_10_mean": search["recall_at_10_mean"],
            }
        )
    rows.sort(key=lambda row: row["vectors"])
    args.out.write_text(json.dumps(rows, indent=2))
    print(json.dumps(rows, indent=2))
    _plot(rows, args.plot)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [row["vectors"] for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    bottom = np.zeros(len(rows))
    for stage in STAGES:
        values = np.asarray([row["stage_ms_median"][stage] for row in rows])
        left.bar([str(s) for s in sizes], values, bottom=bottom, label=stage)
        bottom += values
    left.plot([str(s) for s in sizes], [r["total_ms_p95"] for r in rows], "k^--", label="p95")
    left.set_xlabel("gallery vectors (256-d)")
    left.set_ylabel("upload → candidates, ms (median per stage)")
    left.legend(fontsize=8)
    right.plot(sizes, [r["hnsw_indexes_mb"] for r in rows], "o-", label="HNSW indexes")
    right.plot(sizes, [r["database_mb"] for r in rows], "s-", label="whole database")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("gallery vectors (256-d)")
    right.set_ylabel("MB")
    right.legend(fontsize=8)
    figure.suptitle("Cost growth, 2-core CPU, zero-shot lite0 + PCA-whitening 256, SIFT")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
