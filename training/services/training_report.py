"""A training run's report: held-out accuracy of the candidate, current and zero-shot models.

Imports torch (through ``reid``) inside the functions; only workers call it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from identification.models import ModelVersion
from identification.services.models import model_version_embedder, species_model_setting
from training.models import TrainingRun
from training.selectors import top1_lost
from training.services.training_data import TrainingData


def _honest(
    records: list, embeddings: np.ndarray, methods: tuple[str, ...], matcher: Any = None
) -> dict[str, dict]:
    """The evaluation core's honest leave-one-out (query's encounter excluded), per method."""
    from reid.evaluation import evaluate_records

    result = evaluate_records(records, embeddings, methods=methods, matcher=matcher)
    (stats,) = result["per_species"].values() if result["per_species"] else ({},)
    keys = ("top1", "top5", "mAP", "n_queries")
    ranked = {m: {k: stats.get(m, {}).get(k) for k in keys} for m in methods}
    return {m: {**row, "se": _standard_errors(row)} for m, row in ranked.items()}


def _standard_errors(row: dict) -> dict[str, float | None]:
    """Standard errors over the queries; for mAP an upper bound (see rate_standard_error)."""
    from reid.metrics import rate_standard_error

    if not row.get("n_queries"):
        return {name: None for name in ("top1", "top5", "mAP")}
    return {
        name: rate_standard_error(row[name], row["n_queries"]) for name in ("top1", "top5", "mAP")
    }


def training_report_build(
    *, run: TrainingRun, data: TrainingData, model_path: Path, image_size: int
) -> dict[str, Any]:
    """Held-out top-1/top-5/mAP per species for the current, candidate and zero-shot models,
    local features and the fused ranking, plus the ranking method that wins on the run's
    species. Every number is the app's shortlist ranking under the honest protocol of
    ``reid.evaluation`` (the query's own encounter is never in the gallery)."""
    base: ModelVersion = run.base_version
    embedders = _report_embedders(base=base, model_path=model_path, image_size=image_size)
    local_method = species_model_setting(species=run.species).local_method
    per_species = {
        data.names[slug]: _species_measure(
            folder=folder,
            embedders=embedders,
            local_method=local_method,
            new_species=slug == run.species.slug,
        )
        for slug, folder in data.held_out_dirs.items()
    }
    target = per_species[run.species.name]
    methods = {
        "fused": target["fused"]["top1"],
        "embedding": target["candidate"]["top1"],
        "local": target["local"]["top1"],
    }
    candidate = embedders["candidate"]
    rankings = {
        "candidate": "candidate",
        "current": "current",
        "zero_shot": "zero_shot",
        "local": "local",
        "fused": "fused",
    }
    return {
        # The run's species, every ranking, with standard errors and the held-out size.
        "held_out": {
            "individuals": target["held_out_individuals"],
            "images": target["held_out_images"],
            "queries": target["candidate"]["n_queries"],
        },
        "rankings": {
            name: {k: target[key][k] for k in ("top1", "top5", "mAP", "se")}
            for name, key in rankings.items()
        },
        "run": run.pk,
        "species": run.species.name,
        "mode": run.mode,
        "base_version": base.name,
        "before": {k: target["current"][k] for k in ("top1", "top5", "mAP")},
        "after": {k: target["candidate"][k] for k in ("top1", "top5", "mAP")},
        "zero_shot": {k: target["zero_shot"][k] for k in ("top1", "top5", "mAP")},
        "ranking_method_top1": methods,
        "recommended_ranking_method": _recommended_method(methods),
        "forgetting": {
            name: {
                "before": s["current"]["top1"],
                "after": s["candidate"]["top1"],
                "flagged": top1_lost(before=s["current"]["top1"], after=s["candidate"]["top1"]),
            }
            for name, s in per_species.items()
            if not s["new_species"]
        },
        "per_species": per_species,
        "candidate": {
            "model_path": str(model_path),
            "backbone": candidate.model.config.backbone,
            "embedding_dim": int(candidate.embedding_dim),
            "image_size": image_size,
        },
        "protocol": "honest leave-one-out on held-out individuals (disjoint from training): "
        "the app's shortlist ranking, the query's own encounter never in the gallery",
    }


def _report_embedders(*, base: ModelVersion, model_path: Path, image_size: int) -> dict:
    """The models compared: the candidate, the base version and, unless the base is
    ImageNet's already, the zero-shot ImageNet backbone."""
    from reid.inference import load_model

    embedders = {
        "candidate": load_model(str(model_path), image_size=image_size),
        "current": model_version_embedder(version=base),  # with its compaction, if any
    }
    if base.weights != "imagenet":
        embedders["zero_shot"] = load_model("imagenet")
    return embedders


def _species_measure(
    *, folder: str, embedders: dict, local_method: str, new_species: bool
) -> dict[str, Any]:
    """One species' held-out accuracy for every model, and for the candidate's local features
    and fused ranking; zero-shot is the current model's when the base is ImageNet's."""
    from reid.data import load_records
    from reid.evaluation import PairMatcher
    from reid.ranking import EMBEDDING, FUSED, LOCAL

    records = load_records(folder)
    rows = {}
    for name, embedder in embedders.items():
        vectors = embedder.embed_records(records)
        if name == "candidate":
            ranked = _honest(
                records, vectors, (EMBEDDING, LOCAL, FUSED), PairMatcher(records, local_method)
            )
            rows.update(candidate=ranked[EMBEDDING], local=ranked[LOCAL], fused=ranked[FUSED])
        else:
            rows[name] = _honest(records, vectors, (EMBEDDING,))[EMBEDDING]
    rows.setdefault("zero_shot", rows["current"])
    return {
        "new_species": new_species,
        "held_out_images": len(records),
        "held_out_individuals": len({r.identity for r in records}),
        "local_method": local_method,
        **rows,
    }


def _recommended_method(methods: dict[str, float | None]) -> str:
    """The method with the best top-1; a fusion only when it is at least as good as the best
    single method."""
    recommended = max(("embedding", "local"), key=lambda name: methods[name] or 0.0)
    if (methods["fused"] or 0.0) >= (methods[recommended] or 0.0):
        recommended = "fused"
    return recommended


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value
