"""Optional ONNX Runtime backend for CPU embedding.

On the 2-core benchmark CPU, ONNX Runtime ran the exported ``tf_efficientnet_lite0``
``ReIdModel`` 2.5-5x faster than PyTorch eager with the same embeddings (cosine 1.0; see
``BENCHMARKS.md``). Other backbones are untested with this exporter. It needs the
``bench`` extra (``onnxruntime``, ``onnx``, ``onnxscript``), which is not a main dependency, so
:class:`reid.inference.Embedder` uses it only when asked (``backend="onnx"``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def onnx_available() -> bool:
    """Tell whether ``onnxruntime`` and the exporter's ``onnxscript`` are importable."""
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


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
        model, (dummy,), input_names=["images"], output_names=["embeddings"],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
        opset_version=18, dynamo=True, verbose=False,
    )
    data = program.model_proto.SerializeToString()
    if path is not None:
        Path(path).write_bytes(data)
    return data


class OnnxNetwork:
    """ONNX Runtime session with the call signature of the torch network (CPU only).

    Args:
        model: the torch network to export (see :func:`export_onnx`) ...
        image_size: ... at this input side.
        threads: intra-op threads (default: ``torch.get_num_threads()``, the same budget torch
            would use).
    """

    def __init__(self, model: nn.Module, image_size: int, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.image_size = int(image_size)
        self.session = ort.InferenceSession(
            export_onnx(model, image_size), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Embed a batch.

        Args:
            images: ``(B, 3, S, S)`` float tensor on CPU.

        Returns:
            ``(B, D)`` float32 tensor, as the torch network returns it.
        """
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {"images": array})[0])
