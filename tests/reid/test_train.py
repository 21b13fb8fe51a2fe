"""Training end to end on real photos (cached and full modes), resume, cancel, fine-tune."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reid.data import load_records, subset_records, write_metadata
from reid.evaluation import embedding_retrieval
from reid.inference import load_model
from reid.train import TrainConfig, train

pytestmark = pytest.mark.slow
IMAGE_SIZE = 96


@pytest.fixture
def two_species(shared_datasets: Path, tmp_path: Path) -> list[str]:
    """4 fish + 4 chimpanzees, 5 images each, as two small dataset folders."""
    folders = []
    for name in ("fs48_fish", "chimp_faces_demo"):
        records = subset_records(
            load_records(shared_datasets / name), identities=4, max_per_identity=5, seed=1
        )
        write_metadata(records, tmp_path / name)
        folders.append(str(tmp_path / name))
    return folders


def _config(data_dirs: list[str], out_dir: Path, **overrides) -> TrainConfig:
    settings = dict(
        data_dirs=data_dirs,
        out_dir=str(out_dir),
        mode="cached",
        image_size=IMAGE_SIZE,
        epochs=6,
        batch_size=16,
        samples_per_epoch=96,
        lr=3e-3,
        backbone_lr=1e-3,
        cached_views=3,
        trainable_stages=3,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def _honest_top1(spec: str, data_dirs: list[str]) -> float:
    records = load_records(data_dirs)
    vectors = load_model(spec, device="cpu", image_size=IMAGE_SIZE).embed_records(records)
    return embedding_retrieval(vectors, records)["top1"]


def test_cached_training_beats_the_untrained_model_on_its_training_images(
    two_species: list[str], tmp_path: Path
) -> None:
    progress: list[dict] = []
    result = train(_config(two_species, tmp_path / "run"), progress_callback=progress.append)
    assert result.model_path is not None and result.model_path.exists()
    assert (tmp_path / "run" / "config.json").exists()
    assert (tmp_path / "run" / "metrics.json").exists()
    steps = [p for p in progress if p["phase"] == "train"]
    assert steps[-1]["step"] == steps[-1]["total_steps"] == 36
    assert all(np.isfinite(p["loss"]) for p in steps)
    before = _honest_top1("imagenet", two_species)
    after = _honest_top1(str(result.model_path), two_species)
    assert after > before, (before, after)
    assert result.metrics["train_after"]["top1"] > result.metrics["train_before"]["top1"]


def test_resumed_run_equals_uninterrupted_run(two_species: list[str], tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    straight = train(
        _config(two_species, tmp_path / "straight", epochs=2, cache_dir=cache, evaluate=False)
    )
    calls = {"n": 0}

    def stop_after_first_epoch() -> bool:
        calls["n"] += 1
        return calls["n"] > 6  # 96 samples / batch 16 = 6 steps per epoch

    interrupted = train(
        _config(two_species, tmp_path / "resumed", epochs=2, cache_dir=cache, evaluate=False),
        should_stop=stop_after_first_epoch,
    )
    assert interrupted.stopped and interrupted.model_path is None
    state = torch.load(interrupted.checkpoint_path, weights_only=False)
    assert state["epoch"] == 0 and state["step"] == 6 and state["optimizer_state"]["state"]
    resumed = train(
        _config(
            two_species,
            tmp_path / "resumed",
            epochs=2,
            cache_dir=cache,
            evaluate=False,
            resume=True,
        )
    )
    a = torch.load(straight.model_path, weights_only=False)["model_state"]
    b = torch.load(resumed.model_path, weights_only=False)["model_state"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_fine_tuning_keeps_backbone_and_rebuilds_head_for_new_classes(
    two_species: list[str], shared_datasets: Path, tmp_path: Path
) -> None:
    base = train(_config(two_species[:1], tmp_path / "base", epochs=1, evaluate=False))
    new_chimps = subset_records(
        load_records(shared_datasets / "chimp_faces_demo"), identities=3, max_per_identity=4, seed=7
    )
    write_metadata(new_chimps, tmp_path / "new")
    tuned = train(
        _config(
            [*two_species[:1], str(tmp_path / "new")],
            tmp_path / "tuned",
            epochs=1,
            evaluate=False,
            init=str(base.model_path),
        )
    )
    base_payload = torch.load(base.model_path, weights_only=False)
    tuned_payload = torch.load(tuned.model_path, weights_only=False)
    assert len(tuned_payload["class_map"]) == 4 + 3
    assert set(base_payload["class_map"]) < set(tuned_payload["class_map"])
    assert tuned_payload["head_state"]["weight"].shape[0] == 7 * 3
    key = "backbone.conv_stem.weight"  # frozen in cached mode: identical to the init model
    torch.testing.assert_close(base_payload["model_state"][key], tuned_payload["model_state"][key])


def test_full_mode_trains_every_layer(two_species: list[str], tmp_path: Path) -> None:
    result = train(
        _config(
            two_species[1:],
            tmp_path / "full",
            mode="full",
            image_size=64,
            epochs=1,
            batch_size=8,
            samples_per_epoch=16,
            evaluate=False,
        )
    )
    trained = torch.load(result.model_path, weights_only=False)["model_state"]
    initial = load_model("imagenet").model.state_dict()
    assert not torch.equal(
        trained["backbone.conv_stem.weight"], initial["backbone.conv_stem.weight"]
    )
    assert np.isfinite(result.metrics["final_loss"])


def test_best_epoch_keeper_keeps_the_best_weights_and_counts_patience(tmp_path: Path) -> None:
    from reid.checkpoint_saver import BestEpochKeeper
    from reid.model import ModelConfig, ReIdModel

    model = ReIdModel(
        ModelConfig(backbone="tf_efficientnet_lite0", image_size=64), pretrained=False
    )
    head = torch.nn.Linear(4, 3)
    keeper = BestEpochKeeper(tmp_path, patience=2, state=None)
    assert keeper.update(0, 0.40, model, head)
    best_weight = head.weight.detach().clone()
    with torch.no_grad():
        head.weight.add_(1.0)  # a later, worse epoch
    assert not keeper.update(1, 0.35, model, head) and not keeper.should_stop
    assert not keeper.update(2, 0.40, model, head)  # a tie is no improvement
    assert keeper.should_stop and keeper.best_epoch == 0
    resumed = BestEpochKeeper(tmp_path, patience=2, state=keeper.state())
    assert resumed.should_stop and resumed.best_top1 == 0.40
    resumed.restore_best(model, head)
    assert torch.equal(head.weight, best_weight)


def test_validation_stops_early_and_the_model_file_is_the_best_epoch(
    two_species: list[str], tmp_path: Path
) -> None:
    fish, chimps = two_species
    progress: list[dict] = []
    # Zero learning rates: only the neck's BatchNorm statistics still move, so held-out
    # top-1 soon stops improving and patience 1 ends the run before its six epochs.
    result = train(
        _config(
            [chimps], tmp_path / "run", lr=0.0, backbone_lr=0.0, validation_dirs=[fish], patience=1
        ),
        progress_callback=progress.append,
    )
    validations = [p for p in progress if p["phase"] == "validate"]
    last = validations[-1]["epoch"]
    assert [p["epoch"] for p in validations] == list(range(last + 1)) and last < 5
    assert result.metrics["stopped_early_after_epoch"] == last
    best_top1 = max(p["validation_top1"] for p in validations)
    best_epoch = result.metrics["early_stopping"]["best_epoch"]
    assert validations[best_epoch]["validation_top1"] == best_top1 and last - best_epoch == 1
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    saved = torch.load(result.model_path, weights_only=False)
    for key, tensor in best["model_state"].items():
        assert torch.equal(saved["model_state"][key], tensor), key
    held_out = _honest_top1(str(result.model_path), [fish])
    assert held_out == pytest.approx(best_top1, abs=1e-9)
