"""Model files are read without running code they might hold."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from reid.checkpoint import checkpoint_read


class _Payload:
    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, ("touch /tmp/wildweb-pwned",))


def test_checkpoint_with_numpy_metrics_and_rng_state_is_read(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(
        {
            "model_state": {"w": torch.ones(2)},
            "metrics": {"top1": np.float64(0.5)},
            "rng": np.random.get_state(),
            "class_map": ["a/b"],
        },
        path,
    )
    payload = checkpoint_read(path)
    assert payload["metrics"]["top1"] == 0.5 and payload["class_map"] == ["a/b"]


def test_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model_config": {}, "trap": _Payload()}, path)
    with pytest.raises(ValueError, match="not a checkpoint safe to read"):
        checkpoint_read(path)
    assert not Path("/tmp/wildweb-pwned").exists()
