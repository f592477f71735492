"""Typed configs: unknown keys, wrong types, nested sections and --set overrides."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.config import (AugmentConfig, ConfigError, DataConfig, LossConfig, ModelConfig, TrainConfig, from_dict,
                         load_config, to_dict)

REPO = Path(__file__).resolve().parent.parent


def _write(tmp_path, data, name="cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


def test_defaults_round_trip():
    cfg = TrainConfig()
    assert isinstance(cfg.model, ModelConfig) and isinstance(cfg.loss, LossConfig)
    assert isinstance(cfg.data, DataConfig) and isinstance(cfg.augment, AugmentConfig)
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg


def test_nested_sections(tmp_path):
    cfg = load_config(_write(tmp_path, {
        "model": {"backbone": "resnet18", "head": "fc", "k": 5, "input_size": 128, "uncertainty": False},
        "loss": {"coord": "adl", "adl_lambda": 3},
        "data": {"root": "/x", "limit": 7},
        "augment": {"flip": 0.0},
        "epochs": 3, "lr": 0.01}))
    assert cfg.model == ModelConfig(backbone="resnet18", head="fc", k=5, input_size=128, uncertainty=False)
    assert cfg.loss.coord == "adl" and cfg.loss.adl_lambda == 3.0 and isinstance(cfg.loss.adl_lambda, float)
    assert cfg.data.root == "/x" and cfg.data.limit == 7 and cfg.data.cache is True
    assert cfg.augment.flip == 0.0 and cfg.augment.rotation == AugmentConfig().rotation
    assert cfg.epochs == 3 and cfg.lr == 0.01 and cfg.batch_size == TrainConfig().batch_size


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(_write(tmp_path, "")) == TrainConfig()


@pytest.mark.parametrize("data, key", [
    ({"epoch": 3}, "epoch"),
    ({"model": {"bakbone": "resnet18"}}, "bakbone"),
    ({"augment": {"flip": 0.5, "mirror": 1}}, "mirror"),
    ({"data": {"roots": "x"}}, "roots"),
])
def test_unknown_key_names_the_key(tmp_path, data, key):
    with pytest.raises(ConfigError, match=f"unknown key.*'{key}'"):
        load_config(_write(tmp_path, data))


@pytest.mark.parametrize("data, where", [
    ({"epochs": "ten"}, "epochs"),
    ({"epochs": 2.5}, "epochs"),
    ({"epochs": True}, "epochs"),
    ({"lr": "fast"}, "lr"),
    ({"lr": True}, "lr"),
    ({"model": {"fusion": "yes"}}, "model.fusion"),
    ({"model": {"k": "3"}}, "model.k"),
    ({"model": {"backbone": "vgg16"}}, "model.backbone"),
    ({"loss": {"coord": "l2"}}, "loss.coord"),
    ({"data": {"root": 5}}, "data.root"),
    ({"model": [1, 2]}, "model"),
    ({"model": "resnet18"}, "model"),
])
def test_wrong_type_raises(tmp_path, data, where):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_config(_write(tmp_path, data))


def test_int_accepted_for_float(tmp_path):
    cfg = load_config(_write(tmp_path, {"lr": 1, "augment": {"rotation": 10}}))
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.augment.rotation == 10.0


@pytest.mark.parametrize("data, msg", [
    ({"model": {"input_size": 100}}, "multiple of 32"),
    ({"model": {"k": 0}}, "model.k"),
    ({"model": {"k": 68}}, "model.k"),
    ({"model": {"num_landmarks": 1}}, "num_landmarks"),
    ({"epochs": 0}, "epochs"),
    ({"batch_size": 0}, "batch_size"),
])
def test_invalid_values_raise(tmp_path, data, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(_write(tmp_path, data))


def test_set_overrides(tmp_path):
    path = _write(tmp_path, {"model": {"backbone": "resnet18"}, "epochs": 5})
    cfg = load_config(path, ["model.k=5", "lr=0.01", "epochs=7", "augment.flip=0", "data.root=/tmp/x",
                             "model.fusion=false", "loss.coord=wing"])
    assert cfg.model.backbone == "resnet18" and cfg.model.k == 5 and cfg.model.fusion is False
    assert cfg.lr == 0.01 and cfg.epochs == 7 and cfg.augment.flip == 0.0
    assert cfg.data.root == "/tmp/x" and cfg.loss.coord == "wing"
    # a new section can be created by an override
    assert load_config(path, ["loss.nll=0"]).loss.nll == 0.0
    # the file itself is untouched
    assert yaml.safe_load(path.read_text()) == {"model": {"backbone": "resnet18"}, "epochs": 5}


def test_set_override_checked_like_the_file(tmp_path):
    path = _write(tmp_path, {})
    with pytest.raises(ConfigError, match="unknown key.*'kk'"):
        load_config(path, ["model.kk=5"])
    with pytest.raises(ConfigError, match="model.k"):
        load_config(path, ["model.k=many"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(path, ["epochs"])


def test_set_override_into_a_non_section_is_a_config_error(tmp_path):
    # 'epochs' is a number: 'epochs.x=1' must be refused as a config error, not crash
    path = _write(tmp_path, {"epochs": 5})
    with pytest.raises(ConfigError, match="epochs"):
        load_config(path, ["epochs.x=1"])
    with pytest.raises(ConfigError, match="lr"):
        load_config(_write(tmp_path, {}, "empty.yaml"), ["lr.x=1"])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_write(tmp_path, "- 1\n- 2\n", "list2.yaml"), ["epochs=3"])


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_is_valid(path):
    """Every recipe in configs/ loads (unknown keys and bad values are errors); what it starts from is
    a shipped weights file or a run folder that an earlier recipe writes."""
    cfg = load_config(path)
    for start in (cfg.init_weights, cfg.init_features):
        assert not start or start.startswith("runs/") or (REPO / start).is_file(), start


@pytest.mark.parametrize("name, head", [("sdfl_graph.yaml", "graph"), ("sdfl_fc.yaml", "fc"),
                                        ("sdfl_wasserstein.yaml", "heatmap"), ("sdfl_flagship_fc.yaml", "hybrid")])
def test_shipped_configs_load(name, head):
    cfg = load_config(REPO / "configs" / name)
    assert cfg.model.head == head


def test_dynamic_adjacency_only_for_graph_heads_with_dynamic_edges():
    assert ModelConfig().dynamic_adjacency and ModelConfig(head="hybrid").dynamic_adjacency
    assert not ModelConfig(adjacency="binary").dynamic_adjacency
    assert not ModelConfig(head="fc").dynamic_adjacency and not ModelConfig(head="heatmap").dynamic_adjacency
