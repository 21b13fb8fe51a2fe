"""Setting up a training run: records and class map, model, ArcFace head, imprinting.

Split from :mod:`reid.train` the way timm's ``train.py`` keeps model and optimizer creation
apart from the loop.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reid.backbones import backbone_stages
from reid.checkpoint import MODEL_NAME, load_model_file
from reid.data import ClassBalancedSampler, Record, load_records, subset_records
from reid.feature_cache import build_feature_cache
from reid.losses import SubCenterArcFace, dynamic_margins
from reid.model import ModelConfig, ReIdModel
from reid.train_config import TrainConfig

ProgressCallback = Callable[[dict[str, Any]], None]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_records(config: TrainConfig) -> tuple[list[Record], list[str], list[int]]:
    """Load, subset and filter records; build the class map.

    Returns:
        Records, class map (class key per index, sorted) and label per record.
    """
    records = subset_records(  # without limits it keeps every record in order
        load_records(config.data_dirs),
        identities=config.identities,
        max_per_identity=config.max_per_identity,
        seed=config.seed,
    )
    counts = Counter(r.class_key for r in records)
    records = [r for r in records if counts[r.class_key] >= config.min_images_per_class]
    if not records:
        raise ValueError("no class has enough images to train on")
    class_map = sorted({r.class_key for r in records})
    index = {key: i for i, key in enumerate(class_map)}
    return records, class_map, [index[r.class_key] for r in records]


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up to 1, then cosine decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _resolve_model_file(path: str) -> Path:
    candidate = Path(path)
    return candidate / MODEL_NAME if candidate.is_dir() else candidate


def build_model(config: TrainConfig) -> tuple[ReIdModel, dict[str, Any]]:
    """Fresh model from the config, or the ``init`` model for fine-tuning.

    Returns:
        The model and the init file's metadata (empty without ``init``).
    """
    if config.init:
        model, _, metadata = load_model_file(_resolve_model_file(config.init))
        model.config.image_size = config.image_size
        return model, metadata
    model_config = ModelConfig(
        backbone=config.backbone,
        embedding_dim=config.embedding_dim,
        neck=config.neck,
        image_size=config.image_size,
    )
    return ReIdModel(model_config, pretrained=config.pretrained), {}


def build_loss_head(
    config: TrainConfig,
    embedding_dim: int,
    class_map: list[str],
    labels: Sequence[int],
    init_metadata: dict[str, Any],
) -> tuple[SubCenterArcFace, list[int]]:
    """ArcFace head for ``class_map``; copies weights of classes known to the init model.

    Returns:
        The head and the indices of the classes that got no weights from the init model.
    """
    counts = Counter(labels)
    class_counts = [counts[i] for i in range(len(class_map))]
    margins = (
        dynamic_margins(class_counts, config.margin_min, config.margin_max)
        if config.dynamic_margins
        else config.margin
    )
    head = SubCenterArcFace(
        embedding_dim,
        len(class_map),
        k=config.subcenters,
        scale=config.arcface_scale,
        margins=margins,
    )
    old_state = init_metadata.get("head_state")
    old_map = init_metadata.get("class_map") or []
    copied: set[int] = set()
    if old_state is not None and old_map:
        old_weight = old_state["weight"]
        old_k = old_weight.shape[0] // len(old_map)
        if old_k == head.k and old_weight.shape[1] == embedding_dim:
            old_index = {key: i for i, key in enumerate(old_map)}
            with torch.no_grad():
                for new_i, key in enumerate(class_map):
                    if key in old_index:
                        old_i = old_index[key]
                        head.weight[new_i * head.k : (new_i + 1) * head.k] = old_weight[
                            old_i * old_k : (old_i + 1) * old_k
                        ]
                        copied.add(new_i)
    return head, [i for i in range(len(class_map)) if i not in copied]


def imprint_head(
    model: ReIdModel,
    head: SubCenterArcFace,
    pooled: torch.Tensor,
    labels: Sequence[int],
    classes: Sequence[int],
    calibrate_neck: bool,
) -> None:
    """Start the loss head (and a fresh neck) where the pretrained features already are.

    Weight imprinting (Qi et al. 2018, "Low-Shot Learning with Imprinted Weights"): each
    listed class's sub-centers become its mean training embedding plus a little noise, so
    sub-centers can still drift apart. A fresh BatchNorm neck first gets the training
    images' feature statistics, so the embeddings the centers are computed from match what
    the neck produces in training.

    Args:
        model: the model being trained.
        head: its ArcFace head.
        pooled: pooled features (before the neck) of one plain view per training image.
        labels: class index per row of ``pooled``.
        classes: classes whose sub-centers to set (others keep their weights).
        calibrate_neck: overwrite the neck's running statistics first.
    """
    neck = model.neck
    with torch.no_grad():
        if calibrate_neck and isinstance(neck, nn.BatchNorm1d):
            neck.running_mean.copy_(pooled.mean(dim=0))
            neck.running_var.copy_(pooled.var(dim=0, unbiased=False).clamp(min=neck.eps))
        was_training = model.training
        model.eval()
        embeddings = F.normalize(model.projection(neck(pooled.to(head.weight.device))), dim=1)
        model.train(was_training)
        label_tensor = torch.as_tensor(list(labels), device=embeddings.device)
        sums = torch.zeros(head.num_classes, embeddings.shape[1], device=embeddings.device)
        sums.index_add_(0, label_tensor, embeddings)
        means = F.normalize(sums, dim=1)
        generator = torch.Generator().manual_seed(0)
        for c in classes:
            noise = torch.randn(head.k, embeddings.shape[1], generator=generator)
            centers = means[c] + 0.05 * F.normalize(noise, dim=1).to(means.device)
            head.weight[c * head.k : (c + 1) * head.k] = F.normalize(centers, dim=1)


def freeze_batchnorm_statistics(module: nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode (weights still train)."""
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            child.eval()


def _distributed() -> tuple[int, int, int]:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0"))


def setup_device(config: TrainConfig) -> tuple[torch.device, int, int]:
    """The device, and under ``torchrun`` the process group.

    Returns:
        Device, rank and world size.
    """
    rank, world_size, local_rank = _distributed()
    if world_size > 1 and config.mode != "full":
        raise ValueError("distributed training needs mode='full'")
    if world_size == 1:
        return (
            torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu")),
            rank,
            world_size,
        )
    import torch.distributed as dist

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device, rank, world_size


def setup_trainable(
    config: TrainConfig,
    model: ReIdModel,
    records: list[Record],
    device: torch.device,
    report: ProgressCallback,
) -> tuple[list[nn.Parameter], nn.Module | None, np.ndarray | None, float]:
    """Which backbone parameters train; in ``cached`` mode, the frozen stages' feature cache.

    Returns:
        Trainable backbone parameters, the trainable top stages (``cached`` mode), the
        feature cache (``cached`` mode) and the seconds spent building it.
    """
    if config.mode != "cached":
        return list(model.backbone.parameters()), None, None, 0.0
    stages = backbone_stages(model.backbone)
    if not 0 <= config.trainable_stages < len(stages):
        raise ValueError(f"trainable_stages must be in [0, {len(stages) - 1}]")
    n_frozen = len(stages) - config.trainable_stages
    frozen = nn.Sequential(*stages[:n_frozen])
    trainable_top = nn.Sequential(*stages[n_frozen:])
    for parameter in model.backbone.parameters():
        parameter.requires_grad_(False)
    for parameter in trainable_top.parameters():
        parameter.requires_grad_(True)
    started = time.perf_counter()
    features = build_feature_cache(
        config,
        records,
        frozen,
        device,
        progress=lambda done, total: report(
            {
                "phase": "cache",
                "done": done,
                "total": total,
                "epoch": 0,
                "step": 0,
                "total_steps": 0,
                "loss": float("nan"),
            }
        ),
    )
    return list(trainable_top.parameters()), trainable_top, features, time.perf_counter() - started


def setup_optimizer(
    config: TrainConfig,
    model: ReIdModel,
    head: SubCenterArcFace,
    trainable_backbone: list[nn.Parameter],
    n_records: int,
    world_size: int,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, int, int]:
    """AdamW with two learning rates, and warm-up then cosine decay over the whole run.

    Returns:
        Optimizer, scheduler, steps per epoch and total steps.
    """
    head_parameters = [
        p for name, p in model.named_parameters() if not name.startswith("backbone.")
    ]
    optimizer = torch.optim.AdamW(
        [
            {"params": trainable_backbone, "lr": config.backbone_lr},
            {"params": head_parameters + list(head.parameters()), "lr": config.lr},
        ],
        weight_decay=config.weight_decay,
    )
    samples_per_epoch = config.samples_per_epoch or n_records
    steps_per_epoch = max(1, samples_per_epoch // (config.batch_size * world_size))
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total_steps, int(round(config.warmup_epochs * steps_per_epoch)))
    )
    return optimizer, scheduler, steps_per_epoch, total_steps


@dataclass
class TrainingSession:
    """Everything a run's epochs share, built once by :func:`setup_run`."""

    config: TrainConfig
    device: torch.device
    rank: int
    world_size: int
    report: ProgressCallback
    records: list[Record]
    class_map: list[str]
    labels: list[int]
    model: ReIdModel
    head: SubCenterArcFace
    new_classes: list[int]
    trainable_top: nn.Module | None
    features: np.ndarray | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    sampler: ClassBalancedSampler
    total_steps: int
    metrics: dict[str, Any]
    use_amp: bool
    train_net: nn.Module | None = None
    loader: torch.utils.data.DataLoader | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_run(config: TrainConfig, progress_callback: ProgressCallback | None) -> TrainingSession:
    """Seed, load the data, build model, head, feature cache, optimizer and sampler."""
    device, rank, world_size = setup_device(config)
    report = progress_callback if (progress_callback and rank == 0) else (lambda info: None)
    Path(config.out_dir).mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    records, class_map, labels = prepare_records(config)
    model, init_metadata = build_model(config)
    head, new_classes = build_loss_head(
        config, model.embedding_dim, class_map, labels, init_metadata
    )
    model.to(device)
    head.to(device)
    use_amp = config.amp and device.type == "cuda"
    trainable_backbone, trainable_top, features, cache_seconds = setup_trainable(
        config, model, records, device, report
    )
    optimizer, scheduler, steps_per_epoch, total_steps = setup_optimizer(
        config, model, head, trainable_backbone, len(records), world_size
    )
    sampler = ClassBalancedSampler(
        labels,
        num_samples=steps_per_epoch * config.batch_size * world_size,
        seed=config.seed,
        rank=rank,
        world_size=world_size,
        groups=[r.species for r in records] if config.species_balanced else None,
    )
    return TrainingSession(
        config=config,
        device=device,
        rank=rank,
        world_size=world_size,
        report=report,
        records=records,
        class_map=class_map,
        labels=labels,
        model=model,
        head=head,
        new_classes=new_classes,
        trainable_top=trainable_top,
        features=features,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda", enabled=use_amp),
        sampler=sampler,
        total_steps=total_steps,
        use_amp=use_amp,
        metrics={
            "n_images": len(records),
            "n_classes": len(class_map),
            "mode": config.mode,
            "cache_seconds": cache_seconds,
        },
    )
