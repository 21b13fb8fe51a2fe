"""Top-1 of the hand-set fusion for several local weights, from ``ranking.py``'s cached
shortlists (no matching is redone), next to embedding and local alone, on every species.

    nice -n 10 .venv/bin/python benchmarks/reid/ranking_weights.py
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

from reid.evaluation import methods_compare, ranking_metrics
from reid.ranking import rank

WEIGHTS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=Path, default=Path("/tmp/wildweb-ranking-bench"))
    args = parser.parse_args()
    worst = {w: 1.0 for w in WEIGHTS}
    for path in sorted(args.cache.glob("*-shortlists.pkl")):
        shortlists = pickle.loads(path.read_bytes())["known"]
        single = methods_compare(shortlists, ("embedding", "local"))
        best = max(single["embedding"]["top1"], single["local"]["top1"])
        row = []
        for weight in WEIGHTS:
            top1 = ranking_metrics(
                (s.truth, rank(s.candidates, "fused", local_weight=weight)) for s in shortlists
            )["top1"]
            worst[weight] = min(worst[weight], top1 - best)
            row.append(f"w={weight:g}: {top1:.3f}")
        print(
            f"{path.stem:45s} embedding {single['embedding']['top1']:.3f} "
            f"local {single['local']['top1']:.3f} | " + "  ".join(row)
        )
    print(
        "worst margin vs best single method:",
        "  ".join(f"w={w:g}: {m:+.3f}" for w, m in worst.items()),
    )


if __name__ == "__main__":
    main()
