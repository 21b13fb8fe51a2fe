"""Training: sub-center ArcFace with dynamic margins, class-balanced sampling, two modes.

``full``
    Every layer trains on augmented images (AMP on CUDA; DDP when launched by ``torchrun``
    with ``WORLD_SIZE > 1``).
``cached``
    For CPUs. The early backbone stages are frozen; their outputs are computed once per image
    for a few views (one plain, the rest augmented) and stored in ``cache_dir``. Only the top
    ``trainable_stages`` stages and the head train, reading the stored features.

A checkpoint with model, loss head, optimizer, scheduler, RNG states, config, class map and
code version is written after every epoch, so a killed run continues with ``resume=True``.

The loop is split the way timm's ``train.py`` is: :func:`setup_run` builds everything,
:func:`train_one_epoch` runs one epoch, and :func:`reid.checkpoint.training_checkpoint_save`
writes the checkpoint after each one.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reid.checkpoint import (
    CHECKPOINT_NAME,
    MODEL_NAME,
    atomic_save,
    checkpoint_read,
    restore_rng_states,
    save_model_file,
    training_checkpoint_save,
)
from reid.checkpoint_saver import BestEpochKeeper, held_out_top1
from reid.data import Record, RecordDataset, load_records, train_transform
from reid.evaluation import embedding_retrieval, honest_queries
from reid.feature_cache import cached_batches, pooled_training_features
from reid.losses import SubCenterArcFace
from reid.model import ReIdModel
from reid.train_config import TrainConfig, TrainResult
from reid.train_setup import (
    ProgressCallback,
    TrainingSession,
    freeze_batchnorm_statistics,
    imprint_head,
    setup_run,
)

StopCheck = Callable[[], bool]


@dataclass
class _EpochOutcome:
    step: int
    loss: float
    images: int
    seconds: float
    stopped: bool


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def resume_or_start(run: TrainingSession, checkpoint_path: Path) -> tuple[int, int]:
    """Restore ``checkpoint.pt`` (``resume``), or imprint the head on a fresh start.

    Returns:
        The first epoch to run and the optimizer steps already taken.
    """
    config = run.config
    if config.resume and checkpoint_path.exists():
        state = checkpoint_read(checkpoint_path, map_location=run.device)
        if state["class_map"] != run.class_map:
            raise ValueError("cannot resume: the data's class map differs from the checkpoint's")
        run.model.load_state_dict(state["model_state"])
        run.head.load_state_dict(state["head_state"])
        run.optimizer.load_state_dict(state["optimizer_state"])
        run.scheduler.load_state_dict(state["scheduler_state"])
        run.scaler.load_state_dict(state["scaler_state"])
        restore_rng_states(state["rng_states"])
        run.metrics.update(state.get("metrics", {}))
        return int(state["epoch"]) + 1, int(state["step"])
    if config.imprint or (config.evaluate and run.is_main):
        pooled = pooled_training_features(
            run.model, run.trainable_top, run.features, run.records, config, run.device
        )
        if config.evaluate and run.is_main:
            run.metrics["train_before"] = _training_images_top1(run.model, pooled, run.records)
        if config.imprint:
            imprint_head(
                run.model,
                run.head,
                pooled,
                run.labels,
                run.new_classes,
                calibrate_neck=not config.init,
            )
    return 0, 0


def setup_loop(run: TrainingSession) -> None:
    """The module the optimizer steps through (DDP-wrapped when distributed) and, in
    ``full`` mode, the image loader."""
    run.train_net = _TrainingNet(run.model, run.head, run.trainable_top)
    if run.distributed:
        run.train_net = torch.nn.parallel.DistributedDataParallel(
            run.train_net, device_ids=[run.device.index] if run.device.type == "cuda" else None
        )
    config = run.config
    if config.mode == "full":
        dataset = RecordDataset(
            run.records,
            run.labels,
            train_transform(config.image_size, hflip=config.hflip, style=config.augmentation),
        )
        run.loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=run.sampler,
            drop_last=True,
            num_workers=config.num_workers,
            pin_memory=run.device.type == "cuda",
        )


def train_one_epoch(
    run: TrainingSession, epoch: int, step: int, should_stop: StopCheck | None
) -> _EpochOutcome:
    """One pass of the class-balanced sampler: forward, backward, optimizer and LR step."""
    config, model = run.config, run.model
    run.sampler.set_epoch(epoch)
    model.train()
    run.head.train()
    if config.mode == "cached":
        model.backbone.eval()  # frozen stages keep their statistics
        run.trainable_top.train()
        batches = cached_batches(run.sampler, run.features, torch.tensor(run.labels), config, epoch)
    else:
        batches = iter(run.loader)
    if config.freeze_batchnorm:
        freeze_batchnorm_statistics(model.backbone)
    outcome = _EpochOutcome(step=step, loss=float("nan"), images=0, seconds=0.0, stopped=False)
    for inputs, targets in batches:
        if should_stop is not None and should_stop():
            outcome.stopped = True
            break
        step_started = time.perf_counter()
        inputs = inputs.to(run.device, non_blocking=True)
        targets = targets.to(run.device, non_blocking=True)
        with torch.autocast(run.device.type, dtype=torch.float16, enabled=run.use_amp):
            loss = run.train_net(inputs, targets)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        outcome.step += 1
        outcome.loss = float(loss.detach())
        elapsed = time.perf_counter() - step_started
        outcome.seconds += elapsed
        outcome.images += len(targets)
        run.report(
            {
                "phase": "train",
                "epoch": epoch,
                "step": outcome.step,
                "total_steps": run.total_steps,
                "loss": outcome.loss,
                "lr": run.scheduler.get_last_lr()[-1],
                "images_per_second": len(targets) / max(elapsed, 1e-9),
            }
        )
    return outcome


def _validation_setup(
    run: TrainingSession, out_dir: Path
) -> tuple[list[Record], BestEpochKeeper | None]:
    if not run.config.validation_dirs:
        return [], None
    if run.distributed:
        raise ValueError("validation_dirs (early stopping) needs a single training process")
    records = load_records(run.config.validation_dirs)
    encounters = [r.encounter or f"image:{r.image_id}" for r in records]
    if not honest_queries([r.class_key for r in records], encounters):
        return [], None  # no individual there has a second encounter: nothing honest to stop on
    return records, BestEpochKeeper(out_dir, run.config.patience, run.metrics.get("early_stopping"))


def validate_epoch(
    run: TrainingSession, keeper: BestEpochKeeper, records: list[Record], epoch: int
) -> bool:
    """Held-out top-1 after an epoch; keeps the best weights.

    Returns:
        True when the run should stop early (``patience`` epochs without improvement).
    """
    top1 = held_out_top1(run.model, records, run.config.image_size, run.device)
    improved = keeper.update(epoch, top1, run.model, run.head)
    run.metrics["early_stopping"] = keeper.state()
    run.metrics.setdefault("validation_top1", []).append([epoch, top1])
    run.report(
        {
            "phase": "validate",
            "epoch": epoch,
            "validation_top1": top1,
            "best_top1": keeper.best_top1,
            "best_epoch": keeper.best_epoch,
            "improved": improved,
        }
    )
    return keeper.should_stop


def _checkpoint_save(run: TrainingSession, path: Path, epoch: int, step: int) -> None:
    training_checkpoint_save(
        path,
        epoch=epoch,
        step=step,
        model=run.model,
        head=run.head,
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        scaler=run.scaler,
        train_config=asdict(run.config),
        class_map=run.class_map,
        metrics={k: v for k, v in run.metrics.items() if k != "train_after"},
    )


def _model_save(run: TrainingSession, out_dir: Path) -> Path:
    """``model.pt`` (with the loss head, for later fine-tuning), config and metrics files."""
    config, metrics = run.config, run.metrics
    if config.evaluate:
        pooled = pooled_training_features(
            run.model, run.trainable_top, run.features, run.records, config, run.device
        )
        metrics["train_after"] = _training_images_top1(run.model, pooled, run.records)
    model_path = save_model_file(
        out_dir / MODEL_NAME,
        run.model.cpu(),
        class_map=run.class_map,
        metrics=metrics,
        train_config=asdict(config),
    )
    payload = checkpoint_read(model_path)
    payload["head_state"] = {k: v.cpu() for k, v in run.head.state_dict().items()}
    atomic_save(payload, model_path)
    (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    return model_path


def train(
    config: TrainConfig,
    progress_callback: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> TrainResult:
    """Train (or fine-tune, or resume) a re-identification model.

    Args:
        config: the run configuration.
        progress_callback: called after each step with ``epoch, step, total_steps, loss, lr,
            images_per_second`` (and ``phase="cache"`` with ``done, total`` while caching).
        should_stop: polled every step; returning ``True`` stops after saving nothing new
            (the last epoch checkpoint stays resumable).

    Returns:
        Paths and metrics of the run.
    """
    run = setup_run(config, progress_callback)
    out_dir = Path(config.out_dir)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    start_epoch, step = resume_or_start(run, checkpoint_path)
    setup_loop(run)
    validation, keeper = _validation_setup(run, out_dir)
    stopped, images_seen, train_seconds = False, 0, 0.0
    for epoch in range(start_epoch, config.epochs):
        outcome = train_one_epoch(run, epoch, step, should_stop)
        step = outcome.step
        images_seen += outcome.images
        train_seconds += outcome.seconds
        if outcome.stopped:
            stopped = True
            break
        run.metrics["final_loss"] = outcome.loss
        stop_early = keeper is not None and validate_epoch(run, keeper, validation, epoch)
        if run.is_main:
            _checkpoint_save(run, checkpoint_path, epoch, step)
        if stop_early:
            run.metrics["stopped_early_after_epoch"] = epoch
            break

    metrics = run.metrics
    result = TrainResult(
        model_path=None,
        checkpoint_path=checkpoint_path if checkpoint_path.exists() else None,
        out_dir=out_dir,
        metrics=metrics,
        stopped=stopped,
    )
    metrics["train_images_per_second"] = images_seen / train_seconds if train_seconds else None
    metrics["peak_memory_mb"] = _peak_memory_mb(run.device)
    if run.distributed:
        import torch.distributed as dist

        dist.barrier()
    if not stopped and run.is_main:
        if keeper is not None and keeper.best_epoch is not None:
            keeper.restore_best(run.model, run.head)  # the best epoch, not the last
        result.model_path = _model_save(run, out_dir)
    if run.distributed:
        dist.destroy_process_group()
    return result


class _TrainingNet(nn.Module):
    """Model + loss head in one module (so DDP sees every trainable parameter)."""

    def __init__(
        self, model: ReIdModel, head: SubCenterArcFace, trainable_top: nn.Module | None
    ) -> None:
        super().__init__()
        self.model = model
        self.head = head
        self.trainable_top = trainable_top

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.trainable_top is not None:
            embeddings = self.model.forward_head(self.trainable_top(inputs))
        else:
            embeddings = self.model(inputs)
        return self.head(embeddings, targets)


@torch.inference_mode()
def _training_images_top1(
    model: ReIdModel, pooled: torch.Tensor, records: Sequence[Record]
) -> dict[str, Any]:
    """Honest embedding ranking of the training images (plain view): a quick learning signal."""
    was_training = model.training
    model.eval()
    embeddings = F.normalize(model.projection(model.neck(pooled)), dim=1).cpu().numpy()
    model.train(was_training)
    result = embedding_retrieval(embeddings, records)
    return {k: result[k] for k in ("top1", "top5", "mAP", "n_queries")}
