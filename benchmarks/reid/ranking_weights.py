"""Top-1 of the hand-set fusion for several cosine weights, from ``ranking.py``'s cached
shortlists (no matching is redone), next to embedding and local alone, on every species.

    nice -n 10 .venv/bin/python benchmarks/reid/ranking_weights.py
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

from reid.evaluation import methods_compare, ranking_metrics
from reid.ranking import rank

WEIGHTS = (2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=Path, default=Path("/tmp/wildweb-ranking-bench"))
    args = parser.parse_args()
    worst: dict[str, dict[float, float]] = {}
    for path in sorted(args.cache.glob("*-shortlists.pkl")):
        shortlists = pickle.loads(path.read_bytes())["known"]
        single = methods_compare(shortlists, ("embedding", "local"))
        best = max(single["embedding"]["top1"], single["local"]["top1"])
        row = []
        for weight in WEIGHTS:
            top1 = ranking_metrics(
                (s.truth, rank(s.candidates, "fused", cosine_weight=weight)) for s in shortlists
            )["top1"]
            local_method = path.stem.split("-")[-2]
            margins = worst.setdefault(local_method, {})
            margins[weight] = min(margins.get(weight, 1.0), top1 - best)
            row.append(f"w={weight:g}: {top1:.3f}")
        print(
            f"{path.stem:45s} embedding {single['embedding']['top1']:.3f} "
            f"local {single['local']['top1']:.3f} | " + "  ".join(row)
        )
    for local_method, margins in worst.items():
        print(
            f"worst margin vs best single method ({local_method}):",
            "  ".join(f"w={w:g}: {m:+.3f}" for w, m in margins.items()),
        )


if __name__ == "__main__":
    main()
