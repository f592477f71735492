"""Helpers of the training tests (tests/test_train.py, tests/test_train_faults.py): the tiny run's
config, reading its tensors back, and the exception a simulated kill raises. The shared runs
themselves (train_root, straight_run) are session fixtures in tests/conftest.py."""
from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from conftest import TINY_CONFIG

# Light augmentation of every kind, so resume also checks that augmentation is reproducible.
AUG = dict(rotation=20.0, rotation_prob=0.5, scale=0.1, translation=0.05, flip=0.5, occlusion=0.3, color=0.3,
           blur=0.3)


def cfg_dict(root: Path, **over) -> dict:
    d = {"model": dict(TINY_CONFIG), "data": {"root": str(root), "val_fraction": 0.25, "cache": True},
         "augment": dict(AUG), "epochs": 3, "batch_size": 4, "lr": 3e-3, "warmup_epochs": 1, "workers": 0,
         "threads": 1, "seed": 0}
    for k, v in over.items():
        if isinstance(v, dict):
            d[k] = {**d.get(k, {}), **v}
        else:
            d[k] = v
    return d


def write_cfg(path: Path, d: dict) -> str:
    path.write_text(yaml.safe_dump(d))
    return str(path)


def all_tensors(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "last.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


class Killed(Exception):
    """Raised by a monkeypatched save to simulate a kill."""


def killed_after_epoch(monkeypatch, cfg: str, out: Path, epoch: int = 2):
    """Run core.train on cfg into out and simulate a kill right after the checkpoint of `epoch`."""
    import pytest

    from core.train import Trainer, main

    save = Trainer.save

    def save_then_die(self, best):
        save(self, best)
        if self.epoch == epoch:
            raise Killed

    monkeypatch.setattr(Trainer, "save", save_then_die)
    with pytest.raises(Killed):
        main(["--config", cfg, "--out", str(out)])
    monkeypatch.undo()
