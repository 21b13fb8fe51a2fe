"""PyTorch eager vs ONNX Runtime (fp32, int8 dynamic, int8 static) for the embedding network.

One process, same input tensors for every path, so the speed ratios are side by side. The
network is the zero-shot ``imagenet`` model (``tf_efficientnet_lite0`` + GeM(p=3) + L2 norm)
unless ``--model`` names a trained ``model.pt``.

Accuracy: leave-one-out top-1/mAP on a capped subset of each ``--species`` dataset, per path,
and the cosine between each path's embedding and the PyTorch one for the same image. Static
quantisation is calibrated on images of *other* identities than the evaluated ones (drawn from
all shared datasets), so calibration never sees an evaluated image.

    nice -n 10 .venv/bin/python benchmarks/reid/onnx_bench.py > /tmp/onnx_bench.log 2>&1

onnxruntime, onnx and onnxscript are main dependencies (ONNX Runtime is the CPU default).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
ALL_DATASETS = ("fs48_fish", "chimp_faces_demo", "dogfacenet", "holstein2025_cowfaces")


def _tensors(embedder, records) -> np.ndarray:
    from reid.data import load_image

    chunks = []
    for start in range(0, len(records), 32):
        images = [load_image(r) for r in records[start : start + 32]]
        chunks.append(embedder.preprocess(images).numpy())
    return np.concatenate(chunks).astype(np.float32)


def _interleaved_rates(runners: dict, batches: list[np.ndarray], repeats: int) -> dict:
    """Images/s per runner, best of ``repeats``; the runners take turns within each repeat so
    that load from other processes on a shared machine hits them alike."""
    n = sum(len(b) for b in batches)
    for fn in runners.values():
        fn(batches[0])  # warm-up
    best = {label: float("inf") for label in runners}
    for _ in range(repeats):
        for label, fn in runners.items():
            started = time.perf_counter()
            for batch in batches:
                fn(batch)
            best[label] = min(best[label], time.perf_counter() - started)
    return {label: n / seconds for label, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="imagenet")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--species", nargs="*", default=["holstein2025_cowfaces", "dogfacenet"])
    parser.add_argument("--identities", type=int, default=40)
    parser.add_argument("--max-per-identity", type=int, default=6)
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--speed-images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from reid.data import load_records, subset_records
    from reid.evaluation import embedding_retrieval
    from reid.inference import Embedder, load_network
    from reid.onnx import export_onnx

    torch.set_num_threads(args.threads)
    model, _, _ = load_network(args.model)
    embedder = Embedder(model, image_size=args.image_size, device="cpu", batch_size=args.batch_size)
    net = embedder.model

    # Evaluation subsets and disjoint calibration images.
    eval_sets = {}
    for name in args.species:
        eval_sets[name] = subset_records(
            load_records(SHARED / name),
            identities=args.identities,
            max_per_identity=args.max_per_identity,
            min_per_identity=2,
            seed=args.seed,
        )
    evaluated = {r.class_key for records in eval_sets.values() for r in records}
    pool = [
        r for r in load_records([SHARED / d for d in ALL_DATASETS]) if r.class_key not in evaluated
    ]
    rng = np.random.default_rng(args.seed)
    calibration = [
        pool[i] for i in sorted(rng.choice(len(pool), args.calibration_images, replace=False))
    ]
    calib_tensors = _tensors(embedder, calibration)

    work = Path(tempfile.mkdtemp(prefix="reid-onnx-"))
    fp32_path = work / "model_fp32.onnx"
    started = time.perf_counter()
    export_onnx(net, args.image_size, fp32_path)
    net.to(memory_format=torch.channels_last)
    export_seconds = time.perf_counter() - started
    prep_path = work / "model_prep.onnx"
    # Symbolic shape inference trips over the dynamo export's Expand nodes; ONNX shape
    # inference + ORT graph optimisation are enough for these convolutions.
    quant_pre_process(str(fp32_path), str(prep_path), skip_symbolic_shape=True)
    dynamic_path = work / "model_int8_dynamic.onnx"
    quantize_dynamic(str(prep_path), str(dynamic_path), weight_type=QuantType.QInt8)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([calib_tensors[i : i + 8] for i in range(0, len(calib_tensors), 8)])

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    static_path = work / "model_int8_static.onnx"
    quantize_static(
        str(prep_path),
        str(static_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sessions = {}
    for label, path in (
        ("onnx_fp32", fp32_path),
        ("onnx_int8_dynamic", dynamic_path),
        ("onnx_int8_static", static_path),
    ):
        try:
            sessions[label] = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # noqa: BLE001 - report, keep benchmarking the rest
            print(json.dumps({"session_error": label, "error": str(error)[:300]}), flush=True)

    @torch.inference_mode()
    def run_torch(batch: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        return net(tensor).float().numpy()

    def run_session(session):
        def fn(batch: np.ndarray) -> np.ndarray:
            out = session.run(None, {"images": batch})[0]
            return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

        return fn

    runners = {"torch_eager": run_torch}
    runners.update({k: run_session(s) for k, s in sessions.items()})

    # Speed: the same pre-made 224 px tensors for every path, plus the plain timm backbone
    # (no GeM/normalisation, contiguous, no_grad: what speed.py calls "plain timm eager").
    import timm

    from reid.backbones import load_lite_imagenet_weights
    from reid.data import load_image

    plain = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    load_lite_imagenet_weights(plain, "tf_efficientnet_lite0")
    plain.eval()

    def run_plain(batch: np.ndarray) -> None:
        with torch.no_grad():
            plain(torch.from_numpy(batch))

    speed_records = pool[: args.speed_images]
    speed_tensors = _tensors(embedder, speed_records)
    batches = [
        speed_tensors[i : i + args.batch_size]
        for i in range(0, len(speed_tensors), args.batch_size)
    ]
    result: dict = {
        "threads": args.threads,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "speed_images": len(speed_tensors),
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "export_seconds": round(export_seconds, 1),
        "model_mb": {
            p.stem: round(p.stat().st_size / 2**20, 1)
            for p in (fp32_path, dynamic_path, static_path)
        },
    }
    speed = {
        k: round(v, 1)
        for k, v in _interleaved_rates(
            {"timm_plain_eager": run_plain, **runners}, batches, args.repeats
        ).items()
    }
    print(json.dumps({"speed_img_per_s": speed}), flush=True)
    # End to end from decoded PIL images (resize + normalise included): the Embedder with
    # each backend, as the app calls it.
    onnx_embedder = Embedder(
        load_network(args.model)[0],
        image_size=args.image_size,
        backend="onnx",
        batch_size=args.batch_size,
    )
    pil = [load_image(r) for r in speed_records]
    pil_batches = [pil[i : i + args.batch_size] for i in range(0, len(pil), args.batch_size)]
    end_to_end = {
        k: round(v, 1)
        for k, v in _interleaved_rates(
            {"embedder_torch": embedder.embed_images, "embedder_onnx": onnx_embedder.embed_images},
            pil_batches,
            args.repeats,
        ).items()
    }
    print(json.dumps({"end_to_end_img_per_s": end_to_end}), flush=True)
    result["end_to_end_img_per_s"] = end_to_end
    result["end_to_end_ratio_onnx_vs_torch"] = round(
        end_to_end["embedder_onnx"] / end_to_end["embedder_torch"], 2
    )
    result["speed_img_per_s"] = speed
    result["speed_ratio_vs_torch"] = {
        k: round(v / speed["torch_eager"], 2) for k, v in speed.items()
    }
    result["speed_ratio_vs_timm_plain"] = {
        k: round(v / speed["timm_plain_eager"], 2) for k, v in speed.items()
    }

    # Accuracy per species.
    accuracy = {}
    for name, records in eval_sets.items():
        tensors = _tensors(embedder, records)
        ids = [r.class_key for r in records]
        vectors = {
            label: np.concatenate(
                [
                    fn(tensors[i : i + args.batch_size])
                    for i in range(0, len(tensors), args.batch_size)
                ]
            )
            for label, fn in runners.items()
        }
        reference = vectors["torch_eager"]
        rows = {"n_images": len(records), "n_identities": len(set(ids))}
        for label, vec in vectors.items():
            stats = embedding_retrieval(vec, records)
            cos = np.sum(vec * reference, axis=1)
            rows[label] = {
                "top1": round(stats["top1"], 4),
                "mAP": round(stats["mAP"], 4),
                "cos_vs_torch_mean": round(float(cos.mean()), 5),
                "cos_vs_torch_min": round(float(cos.min()), 5),
            }
        accuracy[name] = rows
        print(json.dumps({"accuracy": {name: rows}}), flush=True)
    result["accuracy"] = accuracy
    print(json.dumps(result))


if __name__ == "__main__":
    main()
