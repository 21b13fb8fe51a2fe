"""Keeping the best epoch on held-out individuals, and stopping when it stops improving.

The idea of timm's ``CheckpointSaver`` (keep the checkpoint with the best validation metric)
plus early stopping: after every epoch, :func:`held_out_top1` measures top-1 on individuals
the run never trains on, under the honest protocol of :mod:`reid.evaluation` (a query's own
encounter is never in its gallery); the best epoch's weights are kept in ``best.pt`` and
become ``model.pt`` at the end.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reid.checkpoint import atomic_save, checkpoint_read
from reid.data import Record
from reid.evaluation import embedding_retrieval
from reid.inference import Embedder
from reid.model import ReIdModel

BEST_NAME = "best.pt"


def held_out_top1(
    model: ReIdModel, records: Sequence[Record], image_size: int, device: torch.device
) -> float:
    """Honest embedding top-1 of ``model`` on ``records`` (a copy is embedded: the training
    model's mode and memory format stay as they are); 0.0 when no photo is a query."""
    # torch, not ONNX: the weights change every epoch, so an export would never be reused.
    embedder = Embedder(
        copy.deepcopy(model), image_size=image_size, device=str(device), backend="torch"
    )
    vectors = embedder.embed_records(list(records))
    return float(embedding_retrieval(vectors, records)["top1"] or 0.0)


class BestEpochKeeper:
    """Tracks the best validation top-1, stores its weights, and says when to stop.

    Its state lives in the run's metrics (``early_stopping``), which every checkpoint
    carries, so a resumed run remembers its best epoch; the weights stay in ``best.pt``.

    Args:
        out_dir: the run folder.
        patience: epochs without improvement before stopping (``None``: never stop early).
        state: ``early_stopping`` metrics of a resumed run.
    """

    def __init__(self, out_dir: Path, patience: int | None, state: dict[str, Any] | None) -> None:
        self.path = Path(out_dir) / BEST_NAME
        self.patience = patience
        state = state or {}
        self.best_top1: float | None = state.get("best_top1")
        self.best_epoch: int | None = state.get("best_epoch")
        self.epochs_without_improvement = int(state.get("epochs_without_improvement", 0))

    def update(self, epoch: int, top1: float, model: ReIdModel, head: nn.Module) -> bool:
        """Record an epoch's validation top-1; keep its weights when it is the best so far.

        Returns:
            True when this epoch is the new best (ties keep the earlier epoch).
        """
        if self.best_top1 is not None and top1 <= self.best_top1:
            self.epochs_without_improvement += 1
            return False
        atomic_save(
            {
                "epoch": epoch,
                "top1": top1,
                "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "head_state": {k: v.detach().cpu() for k, v in head.state_dict().items()},
            },
            self.path,
        )
        self.best_top1, self.best_epoch, self.epochs_without_improvement = top1, epoch, 0
        return True

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.epochs_without_improvement >= self.patience

    def state(self) -> dict[str, Any]:
        return {
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
        }

    def restore_best(self, model: ReIdModel, head: nn.Module) -> None:
        """Load the best epoch's weights into ``model`` and ``head``."""
        best = checkpoint_read(self.path)
        model.load_state_dict(best["model_state"])
        head.load_state_dict(best["head_state"])
