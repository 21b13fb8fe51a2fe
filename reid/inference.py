"""Batched embedding of images with a trained or zero-shot model."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reid.backbones import DEFAULT_BACKBONE
from reid.data import IMAGENET_MEAN, IMAGENET_STD, load_image
from reid.model import ReIdModel

logger = logging.getLogger(__name__)

IMAGENET_SPEC = "imagenet"
DEFAULT_IMAGE_SIZE = 224
BACKENDS = ("auto", "torch", "onnx")


def default_device() -> str:
    """``"cuda"`` when available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class Embedder:
    """Turn PIL images into L2-normalised embedding vectors.

    Args:
        model: an embedding network (``ReIdModel``); put in eval mode here.
        image_size: square input side.
        device: torch device name; default CUDA when available.
        batch_size: images per forward pass.
        backend: ``"auto"`` (default: ``"onnx"`` on a CPU, ``"torch"`` on a GPU),
            ``"torch"`` (eager, ``inference_mode``, channels-last, fp16 autocast on CUDA) or
            ``"onnx"`` (CPU only: ONNX Runtime, 2.5-5x faster on the benchmark CPU with the
            same embeddings, see :mod:`reid.onnx`).
        onnx_file: where the network's ONNX export is kept. Opened when it exists, written
            there first when it does not; without it the network is exported in memory.

    Raises:
        ValueError: for an unknown backend, or ``"onnx"`` on a non-CPU device.
    """

    def __init__(
        self,
        model: ReIdModel,
        image_size: int = DEFAULT_IMAGE_SIZE,
        device: str | None = None,
        batch_size: int = 32,
        backend: str = "auto",
        onnx_file: str | Path | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.device = torch.device(device or ("cpu" if backend == "onnx" else default_device()))
        if backend == "onnx" and self.device.type != "cpu":
            raise ValueError("the onnx backend runs on CPU only")
        self.image_size = int(image_size)
        self._onnx = None
        if backend == "onnx" or (backend == "auto" and self.device.type == "cpu"):
            required = backend == "onnx"
            self._onnx = _onnx_network(model, self.image_size, onnx_file, required=required)
        self.backend = "onnx" if self._onnx is not None else "torch"
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        self.batch_size = batch_size
        self.embedding_dim = int(model.embedding_dim)
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize to ``image_size`` square, convert to RGB, ImageNet-normalise.

        Args:
            images: PIL images of any mode and size.

        Returns:
            ``(N, 3, S, S)`` float tensor on CPU.
        """
        size = (self.image_size, self.image_size)
        arrays = [
            np.asarray(
                (image if image.mode == "RGB" else image.convert("RGB")).resize(
                    size, Image.Resampling.BILINEAR
                ),
                dtype=np.uint8,
            )
            for image in images
        ]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
        return (batch - self._mean) / self._std

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed images.

        Args:
            images: PIL images of any mode.

        Returns:
            ``(N, embedding_dim)`` float32, each row with unit L2 norm.
        """
        outputs = [np.zeros((0, self.embedding_dim), dtype=np.float32)]
        autocast = self.device.type == "cuda"
        for start in range(0, len(images), self.batch_size):
            batch = self.preprocess(images[start : start + self.batch_size])
            if self._onnx is not None:
                outputs.append(self._onnx(batch).numpy())
                continue
            batch = batch.to(self.device, memory_format=torch.channels_last, non_blocking=True)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=autocast):
                embedded = self.model(batch)
            outputs.append(embedded.float().cpu().numpy())
        vectors = np.concatenate(outputs).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def embed_paths(self, paths: Sequence[str | Path]) -> np.ndarray:
        """Embed image files (read as RGB), batch by batch to bound memory.

        Args:
            paths: image file paths.

        Returns:
            ``(N, embedding_dim)`` float32 L2-normalised.
        """
        chunks = [np.zeros((0, self.embedding_dim), dtype=np.float32)]
        for start in range(0, len(paths), self.batch_size):
            images = [load_image(p) for p in paths[start : start + self.batch_size]]
            chunks.append(self.embed_images(images))
        return np.concatenate(chunks)

    def embed_records(self, records: Sequence) -> np.ndarray:
        """Embed :class:`reid.data.Record` images (bbox-cropped when they have one)."""
        chunks = [np.zeros((0, self.embedding_dim), dtype=np.float32)]
        for start in range(0, len(records), self.batch_size):
            images = [load_image(r) for r in records[start : start + self.batch_size]]
            chunks.append(self.embed_images(images))
        return np.concatenate(chunks)


def _onnx_network(model: ReIdModel, image_size: int, onnx_file: str | Path | None, required: bool):
    """ONNX Runtime for ``model``; with ``required`` False, None where export fails."""
    from reid.onnx import OnnxNetwork, onnx_model_ensure

    try:
        return OnnxNetwork(onnx_model_ensure(model, image_size, onnx_file))
    except Exception as error:  # the exporter's errors have no common type
        if required:
            raise
        logger.warning(
            "ONNX export of %s failed (%s); embedding with torch", model.config.backbone, error
        )
        return None


def load_network(spec: str, device: str | None = None) -> tuple[ReIdModel, int, dict]:
    """Build the network described by ``spec`` on CPU.

    Args:
        spec: ``"imagenet"``; a ``model.pt`` written by training (or a run folder holding
            one); a local MiewID snapshot folder; or a local timm hub snapshot folder.
        device: unused here, kept for symmetry.

    Returns:
        The model in eval mode, its eval image size and the stored metadata (class map ...).
    """
    from reid.backbones import create_backbone, is_timm_hub_dir, timm_hub_dir_config
    from reid.model import ModelConfig, imagenet_model, is_miewid_dir, load_miewid_dir

    if spec == IMAGENET_SPEC:
        return imagenet_model().eval(), DEFAULT_IMAGE_SIZE, {}
    path = Path(spec)
    if path.is_dir() and (path / "model.pt").is_file():
        path = path / "model.pt"
    if path.is_file():
        from reid.checkpoint import load_model_file

        return load_model_file(path)
    if path.is_dir() and is_miewid_dir(path):
        model, image_size = load_miewid_dir(path)
        return model, image_size, {}
    if path.is_dir() and is_timm_hub_dir(path):
        config = timm_hub_dir_config(path)
        input_size = config.get("pretrained_cfg", {}).get("input_size", [3, 224, 224])
        image_size = int(input_size[-1])
        backbone = create_backbone(local_dir=path)
        model = ReIdModel(
            ModelConfig(backbone=config["architecture"], neck=False, image_size=image_size),
            backbone=backbone,
        )
        return model.eval(), image_size, {}
    raise ValueError(
        f"model spec {spec!r} is neither 'imagenet', a model.pt, nor a MiewID/timm snapshot folder"
    )


def load_model(
    spec: str,
    device: str | None = None,
    image_size: int | None = None,
    backend: str = "auto",
    onnx_file: str | Path | None = None,
) -> Embedder:
    """Load an embedder.

    Args:
        spec: see :func:`load_network`.
        device: torch device; default CUDA when available, else CPU.
        image_size: override the model's eval image size.
        backend: ``"auto"``, ``"torch"`` or ``"onnx"`` (see :class:`Embedder`).
        onnx_file: where the ONNX export is kept (see :class:`Embedder`).

    Returns:
        An :class:`Embedder`.
    """
    model, model_image_size, _ = load_network(spec)
    size = image_size or model_image_size
    if onnx_file is None:
        onnx_file = default_onnx_file(spec, size)
    return Embedder(model, image_size=size, device=device, backend=backend, onnx_file=onnx_file)


def default_onnx_file(spec: str, image_size: int) -> Path:
    """Where a model's ONNX export is kept when the caller names no place.

    A model file's export sits beside it (``model.pt`` -> ``model-224.onnx``), a snapshot
    folder's inside it, and the ImageNet model's under ``$REID_CACHE_DIR`` (default
    ``~/.cache/reid``). An export older than its model file is stale and written again.
    """
    path = Path(spec)
    if spec == IMAGENET_SPEC:
        cache = Path(os.environ.get("REID_CACHE_DIR", Path.home() / ".cache" / "reid"))
        return cache / f"imagenet-{DEFAULT_BACKBONE}-{image_size}.onnx"
    if path.is_dir() and (path / "model.pt").is_file():
        path = path / "model.pt"
    if path.is_dir():
        return path / f"reid-{image_size}.onnx"
    target = path.with_name(f"{path.stem}-{image_size}.onnx")
    if target.is_file() and target.stat().st_mtime < path.stat().st_mtime:
        target.unlink()
    return target
