"""Moving training and import files written by older versions out of the public media root.

Older versions kept run folders under ``MEDIA_ROOT/training/`` and import uploads under
``MEDIA_ROOT/imports/``, where ``/media/`` served them. They now live under ``PRIVATE_ROOT``.
The migration ``training.0002`` calls :func:`private_files_move_from_media` once, so that model
versions, run reports, manifests and ``metadata.csv`` files keep pointing at their files.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PRIVATE_FOLDERS = ("training", "imports")
# Files whose text names other files of the run by absolute path.
PATH_HOLDING_FILES = ("manifest.json", "metadata.csv")


def private_files_move_from_media(
    *, media_root: Path, private_root: Path, model_version_model: Any, training_run_model: Any
) -> list[Path]:
    """Move ``training/`` and ``imports/`` from ``media_root`` to ``private_root``.

    Args:
        media_root: The public media folder.
        private_root: The private folder that no URL maps to.
        model_version_model: ``ModelVersion`` (the historical model inside a migration).
        training_run_model: ``TrainingRun`` (likewise).

    Returns:
        The folders moved (each a run folder or an upload token folder).
    """
    moved: list[Path] = []
    for name in PRIVATE_FOLDERS:
        source_root, target_root = Path(media_root) / name, Path(private_root) / name
        if not source_root.is_dir():
            continue
        target_root.mkdir(parents=True, exist_ok=True)
        for source in sorted(source_root.iterdir()):
            target = target_root / source.name
            if target.exists():
                logger.warning("Not moving %s: %s already exists.", source, target)
                continue
            shutil.move(str(source), str(target))
            _paths_rewrite(target, old=str(source), new=str(target))
            moved.append(target)
        if not any(source_root.iterdir()):
            source_root.rmdir()
    for old_run in (p for p in moved if p.parent.name == "training"):
        old, new = str(Path(media_root) / "training" / old_run.name), str(old_run)
        for version in model_version_model.objects.filter(weights__startswith=old + "/"):
            version.weights = new + version.weights[len(old) :]
            version.save(update_fields=["weights"])
        for run in training_run_model.objects.exclude(report={}):
            text = json.dumps(run.report)
            if old + "/" in text:
                run.report = json.loads(text.replace(old + "/", new + "/"))
                run.save(update_fields=["report"])
    return moved


def _paths_rewrite(folder: Path, *, old: str, new: str) -> None:
    if not folder.is_dir():
        return
    for name in PATH_HOLDING_FILES:
        for path in folder.rglob(name):
            text = path.read_text()
            if old in text:
                path.write_text(text.replace(old + "/", new + "/"))
