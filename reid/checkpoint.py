"""Checkpoints: everything needed to resume training, and light model files for inference."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

import reid
from reid.model import ModelConfig, ReIdModel

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"


def code_version() -> str:
    """Package version plus the git commit of the source tree when available."""
    version = reid.__version__
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+{commit}" if commit else version


def rng_states() -> dict[str, Any]:
    """Capture Python, numpy, torch (and CUDA) random states."""
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Restore states captured by :func:`rng_states`."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def atomic_save(payload: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temporary file, then rename, so a killed run never leaves half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(target.suffix + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, target)
    return target


def save_model_file(
    path: str | Path,
    model: ReIdModel,
    *,
    class_map: list[str] | None = None,
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
) -> Path:
    """Write the inference file ``model.pt``: weights, architecture, class map, code version.

    Args:
        path: target file.
        model: the trained model.
        class_map: class key per ArcFace class index.
        metrics: evaluation numbers to keep with the model.
        train_config: the training configuration as a dict.

    Returns:
        The written path.
    """
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": "reid-model",
        "model_config": model.config.to_dict(),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "class_map": class_map or [],
        "metrics": metrics or {},
        "train_config": train_config or {},
        "code_version": code_version(),
    }
    return atomic_save(payload, path)


# What checkpoints hold besides tensors and plain containers: numpy scalars and arrays (in
# metrics and the numpy RNG state). Nothing else may be unpickled, so a model file named in
# the database cannot run code when it is read.
CHECKPOINT_SAFE_GLOBALS = [
    np._core.multiarray.scalar,
    np._core.multiarray._reconstruct,
    np.ndarray,
    np.dtype,
    *{type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG"},
]


def checkpoint_read(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``, allowing only :data:`CHECKPOINT_SAFE_GLOBALS`.

    Raises:
        ValueError: The file holds other objects (or is not a checkpoint at all).
    """
    with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as error:
            raise ValueError(f"{path} is not a checkpoint safe to read: {error}") from None


def load_model_file(path: str | Path) -> tuple[ReIdModel, int, dict[str, Any]]:
    """Rebuild a model from ``model.pt`` or a full training checkpoint.

    Args:
        path: file written by :func:`save_model_file` or by training.

    Returns:
        The model (eval mode, CPU), its eval image size and the remaining metadata.
    """
    payload = checkpoint_read(path)
    if "model_config" not in payload:
        raise ValueError(f"{path} is not a reid model file")
    config = ModelConfig.from_dict(payload["model_config"])
    model = ReIdModel(config, pretrained=False)
    model.load_state_dict(payload["model_state"])
    metadata = {k: v for k, v in payload.items() if k not in ("model_state", "optimizer_state")}
    return model.eval(), config.image_size, metadata


def training_checkpoint_save(
    path: str | Path,
    *,
    epoch: int,
    step: int,
    model: ReIdModel,
    head: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    train_config: dict[str, Any],
    class_map: list[str],
    metrics: dict[str, Any],
) -> Path:
    """Write the full checkpoint of a finished epoch: everything :func:`train` resumes from.

    Args:
        path: target file (``checkpoint.pt``).
        epoch: the epoch just finished (0-based).
        step: optimizer steps taken so far.
        model: the model being trained.
        head: its loss head.
        optimizer: the optimizer.
        scheduler: the learning-rate scheduler.
        scaler: the AMP gradient scaler.
        train_config: the training configuration as a dict.
        class_map: class key per ArcFace class index.
        metrics: numbers measured so far.

    Returns:
        The written path.
    """
    return atomic_save(
        {
            "format_version": FORMAT_VERSION,
            "kind": "reid-checkpoint",
            "epoch": epoch,
            "step": step,
            "model_config": model.config.to_dict(),
            "model_state": model.state_dict(),
            "head_state": head.state_dict(),
            "optimizer_state": optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict(),
            "scaler_state": scaler.state_dict(),
            "rng_states": rng_states(),
            "train_config": train_config,
            "class_map": class_map,
            "metrics": metrics,
            "code_version": code_version(),
        },
        path,
    )
