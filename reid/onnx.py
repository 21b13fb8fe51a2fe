"""ONNX Runtime: the CPU embedding path.

On the 2-core benchmark CPU, ONNX Runtime ran the exported ``tf_efficientnet_lite0``
``ReIdModel`` 2.5-5x faster than PyTorch eager with the same embeddings (cosine 1.0; see
``BENCHMARKS.md``), so :class:`reid.inference.Embedder` uses it on a CPU unless told
otherwise. Exporting takes seconds, so a model's ONNX file is written once
(:func:`onnx_model_ensure`) and every later process only opens it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)


def export_onnx(model: nn.Module, image_size: int, path: str | Path | None = None) -> bytes:
    """Export an embedding network to ONNX with a dynamic batch axis.

    Args:
        model: network mapping ``(B, 3, S, S)`` float images to ``(B, D)`` embeddings; it is
            put in eval mode and exported in float32, contiguous memory format.
        image_size: square input side ``S`` used for tracing (the graph keeps it fixed).
        path: also write the model there when given.

    Returns:
        The serialised ONNX model.
    """
    model = model.eval().float().to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(2, 3, image_size, image_size)
    program = torch.onnx.export(
        model,
        (dummy,),
        input_names=["images"],
        output_names=["embeddings"],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
        opset_version=18,
        dynamo=True,
        verbose=False,
    )
    data = program.model_proto.SerializeToString()
    if path is not None:
        _write_atomically(Path(path), data)
    return data


def onnx_model_ensure(model: nn.Module, image_size: int, path: str | Path | None) -> Path | bytes:
    """The model's ONNX export: the file at ``path``, exported there only if it is missing.

    Without a path, or where the path cannot be written (a read-only snapshot folder), the
    export is made in memory and returned as bytes.
    """
    if path is not None and Path(path).is_file():
        return Path(path)
    data = export_onnx(model, image_size)
    if path is None:
        return data
    try:
        _write_atomically(Path(path), data)
    except OSError as error:
        logger.warning(
            "could not keep the ONNX export at %s (%s); using it from memory", path, error
        )
        return data
    return Path(path)


def _write_atomically(target: Path, data: bytes) -> None:
    # Write then rename: a worker killed mid-export never leaves a file that looks done.
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, target)


class OnnxNetwork:
    """ONNX Runtime session with the call signature of the torch network (CPU only).

    Args:
        onnx_model: an ONNX file (see :func:`onnx_model_ensure`) or its serialised bytes
            (see :func:`export_onnx`).
        threads: intra-op threads (default: ``torch.get_num_threads()``, the same budget torch
            would use).
    """

    def __init__(self, onnx_model: bytes | str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Embed a batch.

        Args:
            images: ``(B, 3, S, S)`` float tensor on CPU.

        Returns:
            ``(B, D)`` float32 tensor, as the torch network returns it.
        """
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {"images": array})[0])
