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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import resource
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reid.backbones import DEFAULT_BACKBONE, backbone_stages
from reid.checkpoint import (
    atomic_save,
    checkpoint_read,
    code_version,
    load_model_file,
    restore_rng_states,
    rng_states,
    save_model_file,
)
from reid.data import (
    ClassBalancedSampler,
    Record,
    RecordDataset,
    eval_transform,
    load_image,
    load_records,
    subset_records,
    train_transform,
)
from reid.losses import SubCenterArcFace, dynamic_margins
from reid.metrics import leave_one_out
from reid.model import ModelConfig, ReIdModel

MODES = ("cached", "full")
CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"

ProgressCallback = Callable[[dict[str, Any]], None]
StopCheck = Callable[[], bool]


@dataclass
class TrainConfig:
    """Configuration of one training run; with ``seed`` it determines the run.

    Attributes:
        data_dirs: dataset folders (shared schema); several species may be mixed.
        out_dir: run folder for ``model.pt``, ``checkpoint.pt``, ``config.json``, ``metrics.json``.
        mode: ``"cached"`` (CPU-friendly) or ``"full"``.
        backbone: timm model name (ignored when ``init`` is given: the init model's is used).
        pretrained: start from pretrained backbone weights.
        image_size: square input side.
        epochs: passes of ``samples_per_epoch`` class-balanced draws.
        batch_size: images per step (per process under DDP).
        lr: peak learning rate of the head (pooling, neck, projection, ArcFace weights).
        backbone_lr: peak learning rate of the trainable backbone layers.
        weight_decay: AdamW weight decay.
        warmup_epochs: linear warm-up length, then cosine decay to zero.
        embedding_dim: optional linear projection width.
        neck: BatchNorm1d neck after pooling.
        subcenters: ArcFace sub-centers per class.
        arcface_scale: ArcFace logit scale.
        dynamic_margins: per-class margins from class frequency (else ``margin`` for all).
        margin: fixed margin in radians.
        margin_min: margin of the most common class, radians.
        margin_max: margin of the rarest class, radians.
        min_images_per_class: classes with fewer images are dropped.
        identities: optional cap on identities per species (subset for quick runs).
        max_per_identity: optional cap on images per identity.
        samples_per_epoch: draws per epoch (default: number of training images).
        hflip: random horizontal flips in augmentation.
        cached_views: views per image in the cache (view 0 is un-augmented).
        trainable_stages: backbone stages trained in cached mode, counted from the top
            (EfficientNet: conv head = 1, last block group = 2, ...).
        cache_dir: feature cache folder (default ``out_dir/cache``).
        species_balanced: every species gets an equal share of the draws (then every
            class within it), instead of every class across species.
        imprint: before training, set the neck's statistics from the training images and
            each new class's sub-centers to its mean embedding, so the first gradients refine
            the pretrained features instead of chasing random class centers.
        freeze_batchnorm: keep the backbone's BatchNorm statistics fixed; class-balanced
            batches of a few individuals give noisy batch statistics.
        init: model file or run folder to start from (fine-tuning); the ArcFace head is
            rebuilt for the new class set, copying weights of classes both runs share.
        resume: continue from ``out_dir/checkpoint.pt`` when it exists.
        seed: random seed.
        num_workers: data-loading worker processes.
        device: torch device (default CUDA when available).
        amp: mixed precision on CUDA.
        evaluate: compute leave-one-out on the training images before and after training.
    """

    data_dirs: list[str]
    out_dir: str
    mode: str = "cached"
    backbone: str = DEFAULT_BACKBONE
    pretrained: bool = True
    image_size: int = 224
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-3
    backbone_lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    embedding_dim: int | None = None
    neck: bool = True
    subcenters: int = 3
    arcface_scale: float = 30.0
    dynamic_margins: bool = True
    margin: float = 0.5
    margin_min: float = 0.2
    margin_max: float = 0.5
    min_images_per_class: int = 2
    identities: int | None = None
    max_per_identity: int | None = None
    samples_per_epoch: int | None = None
    hflip: bool = False
    cached_views: int = 3
    trainable_stages: int = 3
    cache_dir: str | None = None
    species_balanced: bool = True
    imprint: bool = True
    freeze_batchnorm: bool = True
    init: str | None = None
    resume: bool = False
    seed: int = 0
    num_workers: int = 0
    device: str | None = None
    amp: bool = True
    evaluate: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be ≥ 2 (BatchNorm)")
        self.data_dirs = [str(d) for d in self.data_dirs]
        self.out_dir = str(self.out_dir)


@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        model_path: ``model.pt`` (``None`` when the run was stopped early).
        checkpoint_path: last full checkpoint.
        out_dir: run folder.
        metrics: numbers measured during the run.
        stopped: ``should_stop()`` ended the run early.
    """

    model_path: Path | None
    checkpoint_path: Path | None
    out_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False


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
    records = load_records(config.data_dirs)
    if config.identities is not None or config.max_per_identity is not None:
        records = subset_records(records, identities=config.identities,
                                 max_per_identity=config.max_per_identity, seed=config.seed)
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
    model_config = ModelConfig(backbone=config.backbone, embedding_dim=config.embedding_dim,
                               neck=config.neck, image_size=config.image_size)
    return ReIdModel(model_config, pretrained=config.pretrained), {}


def build_loss_head(
    config: TrainConfig, embedding_dim: int, class_map: list[str], labels: Sequence[int],
    init_metadata: dict[str, Any],
) -> tuple[SubCenterArcFace, list[int]]:
    """ArcFace head for ``class_map``; copies weights of classes known to the init model.

    Returns:
        The head and the indices of the classes that got no weights from the init model.
    """
    counts = Counter(labels)
    class_counts = [counts[i] for i in range(len(class_map))]
    margins = (dynamic_margins(class_counts, config.margin_min, config.margin_max)
               if config.dynamic_margins else config.margin)
    head = SubCenterArcFace(embedding_dim, len(class_map), k=config.subcenters,
                            scale=config.arcface_scale, margins=margins)
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
                        head.weight[new_i * head.k:(new_i + 1) * head.k] = (
                            old_weight[old_i * old_k:(old_i + 1) * old_k])
                        copied.add(new_i)
    return head, [i for i in range(len(class_map)) if i not in copied]


def imprint_head(
    model: ReIdModel, head: SubCenterArcFace, pooled: torch.Tensor, labels: Sequence[int],
    classes: Sequence[int], calibrate_neck: bool,
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
            head.weight[c * head.k:(c + 1) * head.k] = F.normalize(centers, dim=1)


def freeze_batchnorm_statistics(module: nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode (weights still train)."""
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            child.eval()


class _CacheViews:
    """Dataset of all cached views of one image: view 0 plain, the others augmented."""

    def __init__(self, records: Sequence[Record], image_size: int, views: int, hflip: bool,
                 seed: int) -> None:
        self.records = records
        self.views = views
        self.seed = seed
        self.plain = eval_transform(image_size)
        self.augment = train_transform(image_size, hflip=hflip)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = load_image(self.records[index])
        state = torch.get_rng_state()
        torch.manual_seed(self.seed * 1_000_003 + index)  # same views whatever the worker
        try:
            tensors = [self.plain(image)] + [self.augment(image) for _ in range(self.views - 1)]
        finally:
            torch.set_rng_state(state)
        return torch.stack(tensors)


def _frozen_digest(frozen: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in frozen.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def build_feature_cache(
    config: TrainConfig,
    records: Sequence[Record],
    frozen: nn.Module,
    device: torch.device,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Compute (or reuse) frozen-stage outputs for every image and view.

    Args:
        config: the run configuration.
        records: training images.
        frozen: the frozen early stages (eval mode).
        device: where to run them.
        progress: called with ``(done, total)`` images.

    Returns:
        Read-only memory map ``(N, views, C, h, w)`` float16.
    """
    cache_dir = Path(config.cache_dir or Path(config.out_dir) / "cache")
    cache_dir.mkdir(parents=True, exist_ok=True)
    key_source = json.dumps({
        "frozen": _frozen_digest(frozen),
        "image_size": config.image_size,
        "views": config.cached_views,
        "hflip": config.hflip,
        "seed": config.seed,
        "records": [[r.path, r.bbox] for r in records],
    }, sort_keys=True)
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    array_path = cache_dir / f"features-{key}.npy"
    done_marker = cache_dir / f"features-{key}.done"
    if array_path.exists() and done_marker.exists():
        return np.load(array_path, mmap_mode="r")
    dataset = _CacheViews(records, config.image_size, config.cached_views, config.hflip,
                          config.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=False,
                                         num_workers=config.num_workers)
    features: np.ndarray | None = None
    position = 0
    frozen.eval()
    with torch.inference_mode():
        for batch in loader:
            n, views = batch.shape[:2]
            flat = batch.flatten(0, 1).to(device)
            output = frozen(flat).float().cpu()
            output = output.view(n, views, *output.shape[1:]).numpy().astype(np.float16)
            if features is None:
                features = np.lib.format.open_memmap(
                    array_path, mode="w+", dtype=np.float16, shape=(len(records), *output.shape[1:])
                )
            features[position:position + n] = output
            position += n
            if progress is not None:
                progress(position, len(records))
    assert features is not None
    features.flush()
    del features
    done_marker.write_text(key_source[:200])
    return np.load(array_path, mmap_mode="r")


def _distributed() -> tuple[int, int, int]:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0"))


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


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
    rank, world_size, local_rank = _distributed()
    distributed = world_size > 1
    if distributed and config.mode != "full":
        raise ValueError("distributed training needs mode='full'")
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    else:
        device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    is_main = rank == 0
    report = progress_callback if (progress_callback and is_main) else (lambda info: None)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / CHECKPOINT_NAME

    seed_everything(config.seed)
    records, class_map, labels = prepare_records(config)
    model, init_metadata = build_model(config)
    head, new_classes = build_loss_head(config, model.embedding_dim, class_map, labels,
                                        init_metadata)
    model.to(device)
    head.to(device)
    use_amp = config.amp and device.type == "cuda"

    # Which backbone parameters train, and the forward pass for one batch.
    trainable_backbone: list[nn.Parameter]
    features: np.ndarray | None = None
    trainable_top: nn.Module | None = None
    if config.mode == "cached":
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
        trainable_backbone = list(trainable_top.parameters())
        started = time.perf_counter()
        features = build_feature_cache(
            config, records, frozen, device,
            progress=lambda done, total: report(
                {"phase": "cache", "done": done, "total": total, "epoch": 0, "step": 0,
                 "total_steps": 0, "loss": float("nan")}),
        )
        cache_seconds = time.perf_counter() - started
    else:
        trainable_backbone = list(model.backbone.parameters())
        cache_seconds = 0.0
    head_parameters = [p for name, p in model.named_parameters()
                       if not name.startswith("backbone.")]
    optimizer = torch.optim.AdamW(
        [{"params": trainable_backbone, "lr": config.backbone_lr},
         {"params": head_parameters + list(head.parameters()), "lr": config.lr}],
        weight_decay=config.weight_decay,
    )
    samples_per_epoch = config.samples_per_epoch or len(records)
    steps_per_epoch = max(1, samples_per_epoch // (config.batch_size * world_size))
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total_steps, int(round(config.warmup_epochs * steps_per_epoch)))
    )
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    sampler = ClassBalancedSampler(labels, num_samples=steps_per_epoch * config.batch_size
                                   * world_size, seed=config.seed, rank=rank,
                                   world_size=world_size,
                                   groups=[r.species for r in records]
                                   if config.species_balanced else None)

    metrics: dict[str, Any] = {"n_images": len(records), "n_classes": len(class_map),
                               "mode": config.mode, "cache_seconds": cache_seconds}
    start_epoch = 0
    global_step = 0
    if config.resume and checkpoint_path.exists():
        state = checkpoint_read(checkpoint_path, map_location=device)
        if state["class_map"] != class_map:
            raise ValueError("cannot resume: the data's class map differs from the checkpoint's")
        model.load_state_dict(state["model_state"])
        head.load_state_dict(state["head_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        scheduler.load_state_dict(state["scheduler_state"])
        scaler.load_state_dict(state["scaler_state"])
        restore_rng_states(state["rng_states"])
        start_epoch = int(state["epoch"]) + 1
        global_step = int(state["step"])
        metrics.update(state.get("metrics", {}))
    elif config.imprint or (config.evaluate and is_main):
        pooled = _pooled_training_features(model, trainable_top, features, records, config,
                                           device)
        if config.evaluate and is_main:
            metrics["train_before"] = _leave_one_out(model, pooled, records)
        if config.imprint:
            imprint_head(model, head, pooled, labels, new_classes,
                         calibrate_neck=not config.init)

    train_net: nn.Module = _TrainingNet(model, head, trainable_top)
    if distributed:
        train_net = torch.nn.parallel.DistributedDataParallel(
            train_net, device_ids=[device.index] if device.type == "cuda" else None)
    loader = None
    if config.mode == "full":
        dataset = RecordDataset(records, labels,
                                train_transform(config.image_size, hflip=config.hflip))
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=config.batch_size, sampler=sampler, drop_last=True,
            num_workers=config.num_workers, pin_memory=device.type == "cuda")
    label_tensor = torch.tensor(labels)

    stopped = False
    loss_value = float("nan")
    images_seen = 0
    train_seconds = 0.0
    for epoch in range(start_epoch, config.epochs):
        sampler.set_epoch(epoch)
        model.train()
        head.train()
        if config.mode == "cached":
            model.backbone.eval()  # frozen stages keep their statistics
            trainable_top.train()
            batches = _cached_batches(sampler, features, label_tensor, config, epoch)
        else:
            batches = iter(loader)
        if config.freeze_batchnorm:
            freeze_batchnorm_statistics(model.backbone)
        for inputs, targets in batches:
            if should_stop is not None and should_stop():
                stopped = True
                break
            step_started = time.perf_counter()
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                loss = train_net(inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            global_step += 1
            loss_value = float(loss.detach())
            elapsed = time.perf_counter() - step_started
            train_seconds += elapsed
            images_seen += len(targets)
            report({"phase": "train", "epoch": epoch, "step": global_step,
                    "total_steps": total_steps, "loss": loss_value,
                    "lr": scheduler.get_last_lr()[-1],
                    "images_per_second": len(targets) / max(elapsed, 1e-9)})
        if stopped:
            break
        metrics["final_loss"] = loss_value
        if is_main:
            atomic_save({
                "format_version": 1,
                "kind": "reid-checkpoint",
                "epoch": epoch,
                "step": global_step,
                "model_config": model.config.to_dict(),
                "model_state": model.state_dict(),
                "head_state": head.state_dict(),
                "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict(),
                "scaler_state": scaler.state_dict(),
                "rng_states": rng_states(),
                "train_config": asdict(config),
                "class_map": class_map,
                "metrics": {k: v for k, v in metrics.items() if k != "train_after"},
                "code_version": code_version(),
            }, checkpoint_path)

    result = TrainResult(model_path=None, checkpoint_path=checkpoint_path
                         if checkpoint_path.exists() else None, out_dir=out_dir,
                         metrics=metrics, stopped=stopped)
    metrics["train_images_per_second"] = images_seen / train_seconds if train_seconds else None
    metrics["peak_memory_mb"] = _peak_memory_mb(device)
    if distributed:
        import torch.distributed as dist

        dist.barrier()
    if stopped or not is_main:
        if distributed:
            dist.destroy_process_group()
        return result
    if config.evaluate:
        pooled = _pooled_training_features(model, trainable_top, features, records, config,
                                           device)
        metrics["train_after"] = _leave_one_out(model, pooled, records)
    model_path = save_model_file(out_dir / MODEL_NAME, model.cpu(), class_map=class_map,
                                 metrics=metrics, train_config=asdict(config))
    payload = checkpoint_read(model_path)
    payload["head_state"] = {k: v.cpu() for k, v in head.state_dict().items()}
    atomic_save(payload, model_path)
    (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    if distributed:
        dist.destroy_process_group()
    result.model_path = model_path
    return result


class _TrainingNet(nn.Module):
    """Model + loss head in one module (so DDP sees every trainable parameter)."""

    def __init__(self, model: ReIdModel, head: SubCenterArcFace,
                 trainable_top: nn.Module | None) -> None:
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


def _cached_batches(
    sampler: ClassBalancedSampler, features: np.ndarray, labels: torch.Tensor,
    config: TrainConfig, epoch: int,
):
    """Batches of cached features: sampler indices, one random view each."""
    indices = np.fromiter(iter(sampler), dtype=np.int64)
    views = np.random.default_rng([config.seed, epoch, 1]).integers(
        0, features.shape[1], size=len(indices))
    for start in range(0, len(indices) - config.batch_size + 1, config.batch_size):
        chunk = indices[start:start + config.batch_size]
        chunk_views = views[start:start + config.batch_size]
        order = np.argsort(chunk, kind="stable")  # memmap reads are faster in file order
        stacked = features[chunk[order], chunk_views[order]]
        batch = np.empty_like(stacked)
        batch[order] = stacked
        yield torch.from_numpy(batch.astype(np.float32)), labels[torch.from_numpy(chunk)]


@torch.inference_mode()
def _pooled_training_features(
    model: ReIdModel, trainable_top: nn.Module | None, features: np.ndarray | None,
    records: Sequence[Record], config: TrainConfig, device: torch.device,
) -> torch.Tensor:
    """Pooled features (before the neck) of the plain view of every training image."""
    was_training = model.training
    model.eval()
    chunks = []
    if trainable_top is not None and features is not None:
        for start in range(0, len(records), 64):
            plain = torch.from_numpy(features[start:start + 64, 0].astype(np.float32)).to(device)
            chunks.append(model.pool_features(trainable_top(plain)).float())
    else:
        transform = eval_transform(config.image_size)
        for start in range(0, len(records), 32):
            batch = torch.stack([transform(load_image(r)) for r in records[start:start + 32]])
            chunks.append(model.pool_features(model.forward_features(batch.to(device))).float())
    model.train(was_training)
    return torch.cat(chunks)


@torch.inference_mode()
def _leave_one_out(model: ReIdModel, pooled: torch.Tensor,
                   records: Sequence[Record]) -> dict[str, Any]:
    """Leave-one-out on the training images (plain view), for a quick learning signal."""
    was_training = model.training
    model.eval()
    embeddings = F.normalize(model.projection(model.neck(pooled)), dim=1).cpu().numpy()
    model.train(was_training)
    result = leave_one_out(embeddings, [r.class_key for r in records],
                           [r.species for r in records])
    return {k: result[k] for k in ("top1", "top5", "mAP", "n_queries")}
