"""Training on a handful of synthetic faces: the loss goes down, resume is exact, fine-tuning,
bad runs are refused (faults during training: tests/test_train_faults.py; shared runs: conftest)."""
from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from core.checkpoint import load_model, read_meta
from core.config import ConfigError, ModelConfig, TrainConfig, from_dict
from core.data import FaceDataset, load_jsonl, split_by_photo
from core.train import Trainer, compute_loss, lr_at, main, set_train_mode
from synth_faces import write_split
from train_runs import all_tensors, cfg_dict, killed_after_epoch, max_diff, write_cfg

NO_AUG = dict(rotation=0.0, rotation_prob=0.0, scale=0.0, translation=0.0, flip=0.0, occlusion=0.0, color=0.0,
              blur=0.0)


# ---------------------------------------------------------------- the loss goes down
def test_training_lowers_the_loss(tmp_path, train_root):
    cfg = from_dict(TrainConfig, cfg_dict(train_root, model={"backbone": "resnet18"}, augment=NO_AUG, epochs=10))
    tr = Trainer(cfg, tmp_path / "run")
    assert len(tr.train_records) == 9 and len(tr.val_records) == 3
    assert not {r.photo for r in tr.train_records} & {r.photo for r in tr.val_records}
    x, y, _ = next(iter(DataLoader(FaceDataset(tr.train_records, 64, None, cache=True), batch_size=9)))

    def train_set_loss() -> dict:
        m = copy.deepcopy(tr.model)  # batch statistics, as in training, without touching the run
        set_train_mode(m)
        with torch.no_grad():
            return compute_loss(cfg, m, m(x), y)[1]

    before = train_set_loss()
    best = tr.fit()
    after = train_set_loss()
    assert after["coord"] < 0.75 * before["coord"], (before, after)
    assert after["nll"] < before["nll"]
    hist = tr.history
    assert [h["epoch"] for h in hist] == list(range(1, 11))
    assert hist[-1]["loss"] < 0.7 * hist[0]["loss"], hist
    assert best == min(h["val_nme"] for h in hist) and np.isfinite(best)
    assert (tmp_path / "run" / "last.safetensors").is_file() and (tmp_path / "run" / "best.safetensors").is_file()
    model, meta = load_model(tmp_path / "run" / "best.safetensors")
    assert meta["epoch"] == [h["epoch"] for h in hist if h["val_nme"] == best][0]
    assert meta["n_train"] == 9 and meta["n_val"] == 3 and "validation split by photo" in meta["train_data"]
    assert model.cfg.backbone == "resnet18"


def test_lr_schedule():
    cfg = TrainConfig(lr=1.0, epochs=10, warmup_epochs=2)
    assert lr_at(cfg, 0, 5) == pytest.approx(0.1)
    assert lr_at(cfg, 9, 5) == pytest.approx(1.0)
    assert lr_at(cfg, 10, 5) == pytest.approx(1.0)
    assert lr_at(cfg, 49, 5) == pytest.approx(0.01, abs=0.01)
    assert all(lr_at(cfg, s, 5) >= lr_at(cfg, s + 1, 5) for s in range(10, 49))


# ---------------------------------------------------------------- resume
def test_resume_restores_the_same_state(tmp_path, train_root, straight_run, monkeypatch, capsys):
    """Kill after the epoch-2 checkpoint of a 3-epoch run, resume: same final weights and
    optimizer state as the straight run."""
    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root))
    out = tmp_path / "run"
    killed_after_epoch(monkeypatch, cfg, out, epoch=2)
    assert read_meta(out / "last")["epoch"] == 2
    capsys.readouterr()
    assert main(["--config", cfg, "--out", str(out), "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().err

    a, b = all_tensors(straight_run), all_tensors(out)
    assert any(k.startswith("train.opt.") for k in a)  # the optimizer state is compared too
    assert max_diff(a, b) <= 1e-5
    ma, mb = read_meta(straight_run / "last"), read_meta(out / "last")
    assert ma["epoch"] == mb["epoch"] == 3
    assert [h["val_nme"] for h in ma["history"]] == pytest.approx([h["val_nme"] for h in mb["history"]], abs=1e-6)
    assert [h["loss"] for h in ma["history"]] == pytest.approx([h["loss"] for h in mb["history"]], rel=1e-5)


def test_resume_of_a_finished_run_trains_no_more(tmp_path, train_root, straight_run):
    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root))
    before = (straight_run / "last.safetensors").read_bytes()
    run = tmp_path / "copy"
    run.mkdir()
    for f in straight_run.iterdir():
        (run / f.name).write_bytes(f.read_bytes())
    assert main(["--config", cfg, "--out", str(run), "--resume"]) == 0
    assert (run / "last.safetensors").read_bytes() == before


def test_resume_with_another_model_is_refused(tmp_path, train_root, straight_run, capsys):
    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root, model={"head": "fc"}))
    run = tmp_path / "copy"
    run.mkdir()
    for f in straight_run.iterdir():
        (run / f.name).write_bytes(f.read_bytes())
    assert main(["--config", cfg, "--out", str(run), "--resume"]) == 2
    assert "model config differs" in capsys.readouterr().err


# ---------------------------------------------------------------- fine-tuning (init_weights)
def test_init_weights_starts_from_the_checkpoint(tmp_path, train_root, straight_run):
    cfg = from_dict(TrainConfig, cfg_dict(train_root, init_weights=str(straight_run / "best.safetensors"),
                                           lr=1e-12))
    trainer = Trainer(cfg, tmp_path / "ft")
    want = load_file(str(straight_run / "best.safetensors"))
    got = trainer.model.state_dict()
    assert max_diff({k: got[k] for k in want}, want) == 0.0
    # a fresh optimiser and schedule: epoch 0, and training (at a negligible rate) keeps the weights
    assert trainer.epoch == 0 and not trainer.opt.state
    trainer.cfg.epochs = 1
    trainer.fit()
    got = trainer.model.state_dict()
    assert max_diff({k: got[k] for k in want if "running" not in k and "num_batches" not in k},
                     {k: v for k, v in want.items() if "running" not in k and "num_batches" not in k}) < 1e-6


def test_init_weights_of_another_model_is_refused(tmp_path, train_root, straight_run, capsys):
    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root, model={"head": "fc"},
                                                      init_weights=str(straight_run / "best.safetensors")))
    assert main(["--config", cfg, "--out", str(tmp_path / "ft")]) == 2
    assert "cannot initialise from it" in capsys.readouterr().err


def test_init_weights_with_another_neighbourhood_is_refused(tmp_path, train_root, straight_run, capsys):
    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root, data={"split_seed": 1},
                                                      init_weights=str(straight_run / "best.safetensors")))
    assert main(["--config", cfg, "--out", str(tmp_path / "ft")]) == 2
    assert "another neighbourhood" in capsys.readouterr().err


def test_init_features_copies_the_matching_tensors(tmp_path, train_root, straight_run, capsys):
    """Warm start: a graph head's backbone reaches an FC head (same names and shapes); the neighbourhood,
    mean shape and tensors of other shapes do not; a checkpoint with nothing in common is refused."""
    src = straight_run / "best.safetensors"
    cfg = from_dict(TrainConfig, cfg_dict(train_root, model={"head": "fc"}, init_features=str(src)))
    trainer = Trainer(cfg, tmp_path / "warm")
    want, got = load_file(str(src)), trainer.model.state_dict()
    backbone = [k for k in want if k.startswith("backbone.")]
    assert backbone and all(torch.equal(got[k], want[k]) for k in backbone)
    assert trainer.warm_started["tensors"] == sum(
        k in got and got[k].shape == want[k].shape for k in want if k not in ("neighbours", "mean_shape", "cov_scale"))
    empty = tmp_path / "empty.safetensors"
    from safetensors.torch import save_file
    save_file({"nothing": torch.zeros(1)}, str(empty))
    bad = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root, init_features=str(empty)))
    assert main(["--config", bad, "--out", str(tmp_path / "w2")]) == 2
    assert "no tensor matches" in capsys.readouterr().err


def test_freeze_keeps_named_modules_fixed(tmp_path, train_root, capsys):
    """freeze: the named modules keep their weights and BN statistics through training; the rest
    trains; a name that is no module of the model is refused with the choices."""
    cfg = from_dict(TrainConfig, cfg_dict(train_root, epochs=1, freeze=["backbone", "fusion"]))
    trainer = Trainer(cfg, tmp_path / "frozen")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    frozen = [k for k in before if k.startswith(("backbone.", "fusion."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head."))
    bad = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root, freeze=["decoder"]))
    assert main(["--config", bad, "--out", str(tmp_path / "f2")]) == 2
    assert "not modules of this model" in capsys.readouterr().err


def test_lr_scale_gives_named_modules_their_own_rate(tmp_path, train_root, capsys):
    """lr_scale: the named module's parameters train at lr * scale (the rest at lr), the scaled rate
    survives --resume, and a name that is no module, or a scale <= 0, is refused."""
    cfg = from_dict(TrainConfig, cfg_dict(train_root, epochs=1, lr_scale={"backbone": 0.1}))
    trainer = Trainer(cfg, tmp_path / "scaled")
    trainer.fit()
    groups = trainer.opt.param_groups
    backbone = {id(p) for p in trainer.model.backbone.parameters() if p.requires_grad}  # stem may be frozen
    scaled = [g for g in groups if g["scale"] == 0.1]
    assert len(groups) == 2 and len(scaled) == 1
    assert {id(p) for p in scaled[0]["params"]} == backbone
    rest = next(g for g in groups if g["scale"] == 1.0)
    assert scaled[0]["lr"] == pytest.approx(0.1 * rest["lr"])
    resumed = Trainer(from_dict(TrainConfig, cfg_dict(train_root, epochs=2, lr_scale={"backbone": 0.1})),
                      tmp_path / "scaled")
    resumed.resume()
    assert sorted(g["scale"] for g in resumed.opt.param_groups) == [0.1, 1.0]
    for bad, msg in (({"decoder": 0.5}, "not modules of this model"), ({"backbone": 0.0}, "must be > 0")):
        path = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root, lr_scale=bad))
        assert main(["--config", path, "--out", str(tmp_path / "bad")]) == 2
        assert msg in capsys.readouterr().err


# ---------------------------------------------------------------- refusals
def test_second_run_into_existing_out_is_refused(tmp_path, train_root, straight_run, capsys):
    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root))
    before = (straight_run / "last.safetensors").read_bytes()
    assert main(["--config", cfg, "--out", str(straight_run)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err
    assert (straight_run / "last.safetensors").read_bytes() == before


def test_unknown_config_key_exits_2(tmp_path, train_root, capsys):
    d = cfg_dict(train_root)
    d["model"]["grpah_blocks"] = 2
    cfg = write_cfg(tmp_path / "cfg.yaml", d)
    assert main(["--config", cfg, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "unknown key" in err and "grpah_blocks" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, msg", [("model.bakbone=resnet18", "bakbone"), ("epochs=many", "epochs"),
                                           ("epochs.x=1", "epochs"), ("lr", "key.sub=value")])
def test_bad_set_override_exits_2(tmp_path, train_root, capsys, override, msg):
    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root))
    assert main(["--config", cfg, "--out", str(tmp_path / "run"), "--set", override]) == 2
    assert msg in capsys.readouterr().err


def test_missing_data_exits_2(tmp_path, capsys):
    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(tmp_path / "nowhere"))
    assert main(["--config", cfg, "--out", str(tmp_path / "run")]) == 2
    assert "data file not found" in capsys.readouterr().err


def test_config_json_written(straight_run):
    cfg = json.loads((straight_run / "config.json").read_text())
    assert cfg["model"]["input_size"] == 64 and cfg["epochs"] == 3


def test_retired_switches_load_at_their_value_and_refuse_any_other(tmp_path, train_root):
    """Configs and checkpoints written before a concluded experiment's switch left still load."""
    model = from_dict(ModelConfig, {"edges": "directed", "edge_reliability": False, "graph_context": False,
                                    "node_dropout": 0.0, "k": 5})
    assert model.k == 5 and not hasattr(model, "edges")
    for key, value in (("edges", "undirected"), ("edge_reliability", True), ("node_dropout", 0.3)):
        with pytest.raises(ConfigError, match=f"model.{key}: this switch was retired"):
            from_dict(TrainConfig, {"model": {key: value}})
    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root, epochs=1, model={"edges": "undirected"}))
    assert main(["--config", cfg, "--out", str(tmp_path / "run")]) == 2




def test_extra_holdout_keeps_whole_identities_out_of_training(tmp_path, train_root):
    """data.extra_holdout: a share of `extra`'s identities never reaches training, and it is the share
    that benchmarks/unseen.py --holdout scores (core.data.split_by_photo with the split seed)."""
    root = tmp_path / "faces68"
    shutil.copytree(train_root, root)  # the shared fixture stays as it is
    people = [f"person{i // 3}" for i in range(12)]  # 4 identities, 3 frames each
    write_split(root, n=12, split="extra", seed=7, photos=people)
    data = {"extra_split": "extra", "extra_weight": 0.3, "extra_holdout": 0.5}
    trainer = Trainer(from_dict(TrainConfig, cfg_dict(root, epochs=1, data=data)), tmp_path / "run")
    trained = {r.photo for r in trainer.train_records if r.photo.startswith("person")}
    held = split_by_photo(load_jsonl(root / "extra.jsonl"), 0.5, 0)[1]
    assert len(trained) == 2 and not trained & {r.photo for r in held} and len(held) == 6
    assert np.allclose(trainer.sample_weights[-6:], 0.3)
    assert "50% of its identities held out" in trainer.data_description()
    with pytest.raises(ConfigError, match="extra_holdout"):
        from_dict(TrainConfig, cfg_dict(root, data={**data, "extra_holdout": 1.0}))
