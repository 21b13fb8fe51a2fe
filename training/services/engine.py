"""The worker side of a training run: export the data, train with ``reid``, evaluate.

The export is :mod:`training.services.training_data`, the evaluation
:mod:`training.services.training_report`; this module runs the three and reports progress.

Imports torch (through ``reid``); only workers and the ``finetune`` command import this module.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from training.models import TrainingRun
from training.services.runs import (
    COMMON_DEFAULTS,
    run_log,
    training_run_progress_save,
    training_run_should_stop,
)
from training.services.training_data import TrainingData, run_directory, training_data_export
from training.services.training_report import json_safe, training_report_build

if TYPE_CHECKING:
    from reid.train import TrainConfig

Status = TrainingRun.Status
HISTORY_POINTS = 400
# Share of the progress bar per phase: export, feature cache, training, evaluation.
PHASES = {"export": (0, 5), "cache": (5, 20), "train": (20, 90), "evaluate": (90, 100)}


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

    from reid.train import CHECKPOINT_NAME, train

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
    resume = _checkpoint_resume(run=run, checkpoint=checkpoint)
    config = _train_config(
        run=run, data=data, model_dir=model_dir, engine_mode=engine_mode, resume=resume
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
        "metrics": json_safe(result.metrics),
        "hyperparameters": hp,
        "data": data.counts,
    }
    _run_succeed(run=run, report=report)


def _checkpoint_resume(*, run: TrainingRun, checkpoint: Path) -> bool:
    """Whether the run resumes from its checkpoint (a worker died); counted and logged."""
    from reid.checkpoint import checkpoint_read

    if not checkpoint.exists():
        return False
    epoch = int(checkpoint_read(checkpoint)["epoch"])
    TrainingRun.objects.filter(pk=run.pk).update(resumed_count=run.resumed_count + 1)
    run_log(run_id=run.pk, line=f"Resumed from checkpoint after epoch {epoch + 1}.")
    return True


def _train_config(
    *, run: TrainingRun, data: TrainingData, model_dir: Path, engine_mode: str, resume: bool
) -> TrainConfig:
    """The ``reid.train`` configuration of the run: its base version, hyperparameters and
    exported data; early stopping when the data has a validation set."""
    from reid.train import TrainConfig

    base = run.base_version
    hp = run.hyperparameters
    return TrainConfig(
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


def _run_succeed(*, run: TrainingRun, report: dict[str, Any]) -> None:
    TrainingRun.objects.filter(pk=run.pk).update(
        status=Status.SUCCEEDED,
        progress=100,
        eta_seconds=None,
        finished_at=timezone.now(),
        report=json_safe(report),
        validation_top1=report["after"]["top1"],
        heartbeat_at=timezone.now(),
    )
    run_log(
        run_id=run.pk,
        line=f"Succeeded: held-out top-1 {report['before']['top1']:.3f} "
        f"→ {report['after']['top1']:.3f}.",
    )
