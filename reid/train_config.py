"""The configuration and the result of a training run (:func:`reid.train.train`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reid.backbones import DEFAULT_BACKBONE
from reid.data import AUGMENTATIONS

MODES = ("cached", "full")


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
        augmentation: ``"standard"`` or ``"miewid"`` (see :func:`reid.data.train_transform`).
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
        evaluate: rank the training images before and after training (the honest protocol
            of ``reid.evaluation.embedding_retrieval``: a photo's own encounter is never in
            its gallery).
        validation_dirs: dataset folders of held-out individuals (disjoint from training).
            After every epoch their honest top-1 is measured, and ``model.pt`` gets the
            weights of the best epoch, not the last. Without an individual in two encounters
            there is nothing honest to stop on, and every epoch runs.
        patience: stop after this many epochs without a better validation top-1 (``None``:
            run every epoch). Needs ``validation_dirs``.
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
    augmentation: str = "standard"
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
    validation_dirs: list[str] | None = None
    patience: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be ≥ 2 (BatchNorm)")
        if self.patience is not None and not self.validation_dirs:
            raise ValueError("patience needs validation_dirs (held-out individuals)")
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
