"""The worker side of a training run: export the data, train with ``reid``, evaluate.

Imports torch (through ``reid``); only workers and the ``finetune`` command import this module.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.utils import timezone

from catalogue.models import Annotation, Species
from identification.models import ModelVersion
from identification.services.crops import annotation_crop
from identification.services.models import model_version_embedder, species_model_setting
from training.models import TrainingRun
from training.selectors import top1_lost
from training.services.runs import (
    COMMON_DEFAULTS,
    run_log,
    training_run_progress_save,
    training_run_should_stop,
)

Status = TrainingRun.Status
EXPORT_MAX_SIDE = 512  # crops are stored no larger; training and SIFT never need more
HISTORY_POINTS = 400
VALIDATION_MIN_INDIVIDUALS = 3  # fewer: no early stopping, the last epoch is kept
# Share of the progress bar per phase: export, feature cache, training, evaluation.
PHASES = {"export": (0, 5), "cache": (5, 20), "train": (20, 90), "evaluate": (90, 100)}


def run_directory(*, run: TrainingRun) -> Path:
    """The run's own folder, named by its uuid so that only this run ever resumes from it; in
    the private root, since manifests hold server paths and crops show private and sensitive
    animals."""
    return Path(settings.PRIVATE_ROOT) / "training" / f"run-{run.uuid}"


@dataclass
class TrainingData:
    """What a run trains on and is measured on, as dataset folders in the shared schema."""

    train_dirs: list[str]
    held_out_dirs: dict[str, str]  # species slug -> folder of held-out individuals
    names: dict[str, str]  # species slug -> species name
    counts: dict[str, Any] = field(default_factory=dict)
    # The run's species' early-stopping individuals: disjoint from training and from its
    # reported held-out set, so choosing the best epoch does not flatter the report.
    validation_dir: str | None = None


def training_data_export(*, run: TrainingRun, directory: Path) -> TrainingData:
    """Write the crops and ``metadata.csv`` files a run needs (reused when resuming).

    Per species, individuals are split with ``reid.splits.disjoint_identity_split``
    (encounter-safe, identities disjoint). The run's species always trains on its train side;
    other species' train sides are added only in ``with-original-data`` mode. Every species'
    held-out side is measured (the forgetting check). When the run's species has at least
    ``2 * VALIDATION_MIN_INDIVIDUALS`` held-out individuals, a third of them (at least
    ``VALIDATION_MIN_INDIVIDUALS``) become the early-stopping set instead.
    """
    from reid.data import Record, subset_records, write_metadata
    from reid.splits import disjoint_identity_split

    manifest_path = directory / "manifest.json"
    if manifest_path.exists():
        return TrainingData(**json.loads(manifest_path.read_text()))
    hp = run.hyperparameters
    others = (
        Species.objects.exclude(pk=run.species_id)
        .filter(annotations__individual__isnull=False)
        .distinct()
        .order_by("pk")
    )
    data = TrainingData(train_dirs=[], held_out_dirs={}, names={})
    for species in [run.species, *others]:
        is_target = species.pk == run.species_id
        annotations = list(
            Annotation.objects.filter(species=species, individual__isnull=False)
            .select_related("image", "individual")
            .order_by("pk")
        )
        by_record: dict[str, Annotation] = {}
        records = []
        for annotation in annotations:
            record = Record(
                image_id=f"a{annotation.pk}",
                identity=annotation.individual.code,
                species=species.slug,
                viewpoint=annotation.viewpoint,
                path=str(directory / species.slug / "images" / f"{annotation.pk}.jpg"),
                encounter=f"e{annotation.image.encounter_id}",
                dataset=species.slug,
            )
            by_record[record.image_id] = annotation
            records.append(record)
        records = subset_records(
            records,
            min_per_identity=2,
            seed=hp["seed"],
            identities=hp["max_individuals"] if is_target else hp["original_max_individuals"],
            max_per_identity=(
                hp["images_per_individual"] if is_target else hp["original_images_per_individual"]
            ),
        )
        identities = len({r.identity for r in records})
        if identities < 3:
            if is_target:
                raise ValueError(f"{species} has only {identities} individual(s) with 2+ photos.")
            continue
        fraction = max(hp["validation_fraction"], 2 / identities)
        split = disjoint_identity_split(records, test_fraction=fraction, seed=hp["seed"])
        held = subset_records(
            split.test,
            identities=hp["eval_max_individuals"],
            max_per_identity=hp["eval_images_per_individual"],
            min_per_identity=2,
            seed=hp["seed"],
        )
        validation = []
        if is_target:
            validation, held = _validation_split(held, seed=hp["seed"])
        with_original = run.mode == TrainingRun.Mode.WITH_ORIGINAL_DATA
        train = split.train if (is_target or with_original) else []
        if is_target and not train:
            raise ValueError(
                f"No {species} individuals are left to train on after holding some out."
            )
        for record in [*train, *held, *validation]:
            _crop_write(by_record[record.image_id], Path(record.path))
        if validation:
            write_metadata(validation, directory / f"validation-{species.slug}")
            data.validation_dir = str(directory / f"validation-{species.slug}")
        if train:
            write_metadata(train, directory / f"train-{species.slug}")
            data.train_dirs.append(str(directory / f"train-{species.slug}"))
        if held:
            write_metadata(held, directory / f"held-{species.slug}")
            data.held_out_dirs[species.slug] = str(directory / f"held-{species.slug}")
        data.names[species.slug] = species.name
        data.counts[species.name] = {
            "train_images": len(train),
            "train_individuals": len({r.identity for r in train}),
            "held_out_images": len(held),
            "held_out_individuals": len({r.identity for r in held}),
            **(
                {
                    "validation_images": len(validation),
                    "validation_individuals": len({r.identity for r in validation}),
                }
                if validation
                else {}
            ),
        }
    manifest_path.write_text(json.dumps(data.__dict__, indent=2))
    return data


def _validation_split(held: list, *, seed: int) -> tuple[list, list]:
    """(validation, held-out) records: a third of the held-out individuals, when enough."""
    identities = sorted({r.identity for r in held})
    if len(identities) < 2 * VALIDATION_MIN_INDIVIDUALS:
        return [], held
    count = max(VALIDATION_MIN_INDIVIDUALS, len(identities) // 3)
    chosen = set(random.Random(seed).sample(identities, count))
    return (
        [r for r in held if r.identity in chosen],
        [r for r in held if r.identity not in chosen],
    )


def _crop_write(annotation: Annotation, path: Path) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    crop = annotation_crop(annotation=annotation)
    crop.thumbnail((EXPORT_MAX_SIDE, EXPORT_MAX_SIDE))
    temporary = path.with_suffix(".tmp.jpg")
    crop.save(temporary, "JPEG", quality=92)
    temporary.replace(path)


class _Progress:
    """Turns ``reid.train`` callbacks into throttled database writes and epoch log lines."""

    def __init__(self, run: TrainingRun, validates: bool) -> None:
        self.run_id = run.pk
        self.history: list[dict[str, Any]] = list(run.history or [])
        self.validates = validates  # reid reports a "validate" phase after every epoch
        self.last_write = 0.0
        self.last_stop_check = 0.0
        self.stop = False
        self.epoch: int | None = None
        self.first_step: int | None = None
        self.train_started = 0.0
        self.loss: float | None = None
        self.step = 0

    def __call__(self, info: dict[str, Any]) -> None:
        now = time.monotonic()
        fields: dict[str, Any] = {}
        if info.get("phase") == "cache":
            low, high = PHASES["cache"]
            fields["progress"] = low + (high - low) * info["done"] / max(1, info["total"])
        elif info.get("phase") == "validate":
            self.validated(info)
            return
        else:
            step, total = int(info["step"]), max(1, int(info["total_steps"]))
            if self.first_step is None:
                self.first_step, self.train_started = step - 1, now
            epoch = int(info["epoch"])
            if self.epoch is not None and epoch > self.epoch and not self.validates:
                self.epoch_end(self.epoch)
            self.epoch, self.step = epoch, step
            self.loss = float(info["loss"]) if math.isfinite(info["loss"]) else None
            low, high = PHASES["train"]
            per_step = (now - self.train_started) / max(1, step - self.first_step)
            fields.update(
                progress=low + (high - low) * step / total,
                epoch=epoch + 1,
                current_loss=self.loss,
                eta_seconds=per_step * (total - step) * 1.15 + 5,
            )
            if now - self.last_write >= 1.0 or step == total:
                self.history.append({"step": step, "epoch": epoch + 1, "loss": self.loss})
                fields["history"] = self.history[-HISTORY_POINTS:]
        if now - self.last_write >= 1.0 or "history" in fields:
            training_run_progress_save(run_id=self.run_id, **fields)
            self.last_write = now

    def should_stop(self) -> bool:
        now = time.monotonic()
        if now - self.last_stop_check >= 0.5:
            self.stop = training_run_should_stop(run_id=self.run_id)
            self.last_stop_check = now
        return self.stop

    def epoch_end(self, epoch: int) -> None:
        loss = f"{self.loss:.3f}" if self.loss is not None else "n/a"
        run_log(run_id=self.run_id, line=f"Epoch {epoch + 1} done: loss {loss}.")

    def validated(self, info: dict[str, Any]) -> None:
        """An epoch's top-1 on the early-stopping individuals, for the chart and the log."""
        epoch, top1 = int(info["epoch"]), float(info["validation_top1"])
        self.history.append(
            {"step": self.step, "epoch": epoch + 1, "loss": self.loss, "validation_top1": top1}
        )
        training_run_progress_save(
            run_id=self.run_id, validation_top1=top1, history=self.history[-HISTORY_POINTS:]
        )
        loss = f"{self.loss:.3f}" if self.loss is not None else "n/a"
        run_log(
            run_id=self.run_id,
            line=(
                f"Epoch {epoch + 1} done: loss {loss}, validation top-1 {top1:.3f} (best "
                f"{info['best_top1']:.3f}, epoch {info['best_epoch'] + 1})."
            ),
        )


def training_run_train(*, run: TrainingRun) -> None:
    """Train a claimed run to its end: succeeded (with a report) or cancelled.

    Resumes from ``checkpoint.pt`` in the run folder when one exists (a worker died).
    """
    import torch

    from reid.checkpoint import checkpoint_read
    from reid.train import CHECKPOINT_NAME, TrainConfig, train

    directory = run_directory(run=run)
    engine_mode = run.engine_mode or ("full" if torch.cuda.is_available() else "cached")
    hp = run.hyperparameters
    TrainingRun.objects.filter(pk=run.pk).update(engine_mode=engine_mode)
    run_log(run_id=run.pk, line=f"Started on {run.worker or 'this process'} ({engine_mode}).")
    data = training_data_export(run=run, directory=directory / "data")
    training_run_progress_save(run_id=run.pk, progress=PHASES["export"][1])
    run_log(run_id=run.pk, line=f"Data: {json.dumps(data.counts)}")

    model_dir = directory / "model"
    checkpoint = model_dir / CHECKPOINT_NAME
    resume = checkpoint.exists()
    if resume:
        epoch = int(checkpoint_read(checkpoint)["epoch"])
        TrainingRun.objects.filter(pk=run.pk).update(resumed_count=run.resumed_count + 1)
        run_log(run_id=run.pk, line=f"Resumed from checkpoint after epoch {epoch + 1}.")
    base = run.base_version
    config = TrainConfig(
        data_dirs=data.train_dirs,
        out_dir=str(model_dir),
        mode=engine_mode,
        backbone=base.backbone,
        pretrained=True,
        init=None if base.weights == "imagenet" else base.weights,
        image_size=hp["image_size"],
        epochs=hp["epochs"],
        batch_size=hp["batch_size"],
        lr=hp["lr"],
        backbone_lr=hp["backbone_lr"],
        samples_per_epoch=hp["samples_per_epoch"],
        cached_views=hp["cached_views"],
        trainable_stages=hp["trainable_stages"],
        seed=hp["seed"],
        resume=resume,
        evaluate=False,
        validation_dirs=[data.validation_dir] if data.validation_dir else None,
        # Runs queued before early stopping existed have no patience of their own.
        patience=hp.get("patience", COMMON_DEFAULTS["patience"]) if data.validation_dir else None,
    )
    progress = _Progress(run, validates=bool(data.validation_dir))
    started = time.monotonic()
    result = train(config, progress_callback=progress, should_stop=progress.should_stop)
    if result.stopped:
        TrainingRun.objects.filter(pk=run.pk).update(
            status=Status.CANCELLED, finished_at=timezone.now(), eta_seconds=None
        )
        run_log(run_id=run.pk, line="Cancelled.")
        return
    if progress.epoch is not None and not data.validation_dir:
        progress.epoch_end(progress.epoch)
    if "stopped_early_after_epoch" in result.metrics:
        best = result.metrics["early_stopping"]
        run_log(
            run_id=run.pk,
            line=f"Stopped early after epoch "
            f"{result.metrics['stopped_early_after_epoch'] + 1}; keeping "
            f"epoch {best['best_epoch'] + 1}.",
        )
    train_seconds = time.monotonic() - started
    training_run_progress_save(run_id=run.pk, progress=PHASES["evaluate"][0], eta_seconds=None)
    run_log(run_id=run.pk, line=f"Training done in {train_seconds:.0f} s; evaluating.")
    report = training_report_build(
        run=run, data=data, model_path=result.model_path, image_size=hp["image_size"]
    )
    report["training"] = {
        "engine_mode": engine_mode,
        "seconds": round(train_seconds, 1),
        "metrics": _json_safe(result.metrics),
        "hyperparameters": hp,
        "data": data.counts,
    }
    TrainingRun.objects.filter(pk=run.pk).update(
        status=Status.SUCCEEDED,
        progress=100,
        eta_seconds=None,
        finished_at=timezone.now(),
        report=_json_safe(report),
        validation_top1=report["after"]["top1"],
        heartbeat_at=timezone.now(),
    )
    run_log(
        run_id=run.pk,
        line=f"Succeeded: held-out top-1 {report['before']['top1']:.3f} "
        f"→ {report['after']['top1']:.3f}.",
    )


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
    from reid.data import load_records
    from reid.evaluation import PairMatcher
    from reid.inference import load_model
    from reid.ranking import EMBEDDING, FUSED, LOCAL

    base: ModelVersion = run.base_version
    embedders = {
        "candidate": load_model(str(model_path), image_size=image_size),
        "current": model_version_embedder(version=base),  # with its compaction, if any
    }
    if base.weights != "imagenet":
        embedders["zero_shot"] = load_model("imagenet")
    local_method = species_model_setting(species=run.species).local_method
    per_species: dict[str, Any] = {}
    for slug, folder in data.held_out_dirs.items():
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
        per_species[data.names[slug]] = {
            "new_species": slug == run.species.slug,
            "held_out_images": len(records),
            "held_out_individuals": len({r.identity for r in records}),
            "local_method": local_method,
            **rows,
        }
    target = per_species[run.species.name]
    methods = {
        "fused": target["fused"]["top1"],
        "embedding": target["candidate"]["top1"],
        "local": target["local"]["top1"],
    }
    # A fusion is recommended only when it is at least as good as the best single method.
    recommended = max(("embedding", "local"), key=lambda name: methods[name] or 0.0)
    if (methods["fused"] or 0.0) >= (methods[recommended] or 0.0):
        recommended = "fused"
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
        "recommended_ranking_method": recommended,
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


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value
