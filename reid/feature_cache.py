"""The ``cached`` mode's feature cache: frozen-stage outputs computed once per image and view.

Split from :mod:`reid.train`; the training loop reads batches of these features instead of
images, so on a CPU only the top stages and the head cost time per step.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reid.data import ClassBalancedSampler, Record, eval_transform, load_image, train_transform
from reid.model import ReIdModel
from reid.train_config import TrainConfig


class CacheViews:
    """Dataset of all cached views of one image: view 0 plain, the others augmented."""

    def __init__(
        self,
        records: Sequence[Record],
        image_size: int,
        views: int,
        hflip: bool,
        seed: int,
        augmentation: str = "standard",
    ) -> None:
        self.records = records
        self.views = views
        self.seed = seed
        self.plain = eval_transform(image_size)
        self.augment = train_transform(image_size, hflip=hflip, style=augmentation)

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
    key_source = json.dumps(
        {
            "frozen": _frozen_digest(frozen),
            "image_size": config.image_size,
            "views": config.cached_views,
            "hflip": config.hflip,
            "augmentation": config.augmentation,
            "seed": config.seed,
            "records": [[r.path, r.bbox] for r in records],
        },
        sort_keys=True,
    )
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    array_path = cache_dir / f"features-{key}.npy"
    done_marker = cache_dir / f"features-{key}.done"
    if array_path.exists() and done_marker.exists():
        return np.load(array_path, mmap_mode="r")
    dataset = CacheViews(
        records,
        config.image_size,
        config.cached_views,
        config.hflip,
        config.seed,
        config.augmentation,
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=8, shuffle=False, num_workers=config.num_workers
    )
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
            features[position : position + n] = output
            position += n
            if progress is not None:
                progress(position, len(records))
    assert features is not None
    features.flush()
    del features
    done_marker.write_text(key_source[:200])
    return np.load(array_path, mmap_mode="r")


def cached_batches(
    sampler: ClassBalancedSampler,
    features: np.ndarray,
    labels: torch.Tensor,
    config: TrainConfig,
    epoch: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of cached features: sampler indices, one random view each."""
    indices = np.fromiter(iter(sampler), dtype=np.int64)
    views = np.random.default_rng([config.seed, epoch, 1]).integers(
        0, features.shape[1], size=len(indices)
    )
    for start in range(0, len(indices) - config.batch_size + 1, config.batch_size):
        chunk = indices[start : start + config.batch_size]
        chunk_views = views[start : start + config.batch_size]
        order = np.argsort(chunk, kind="stable")  # memmap reads are faster in file order
        stacked = features[chunk[order], chunk_views[order]]
        batch = np.empty_like(stacked)
        batch[order] = stacked
        yield torch.from_numpy(batch.astype(np.float32)), labels[torch.from_numpy(chunk)]


@torch.inference_mode()
def pooled_training_features(
    model: ReIdModel,
    trainable_top: nn.Module | None,
    features: np.ndarray | None,
    records: Sequence[Record],
    config: TrainConfig,
    device: torch.device,
) -> torch.Tensor:
    """Pooled features (before the neck) of the plain view of every training image."""
    was_training = model.training
    model.eval()
    chunks = []
    if trainable_top is not None and features is not None:
        for start in range(0, len(records), 64):
            plain = torch.from_numpy(features[start : start + 64, 0].astype(np.float32)).to(device)
            chunks.append(model.pool_features(trainable_top(plain)).float())
    else:
        transform = eval_transform(config.image_size)
        for start in range(0, len(records), 32):
            batch = torch.stack([transform(load_image(r)) for r in records[start : start + 32]])
            chunks.append(model.pool_features(model.forward_features(batch.to(device))).float())
    model.train(was_training)
    return torch.cat(chunks)
