"""The GPU recipe's CPU rehearsal end to end on synthetic faces: pack (downscaled data, code,
config) -> run --dry-run (torchrun, 2 gloo processes) -> weights, evaluations and a timing report."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from synth_faces import write_split

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "benchmarks" / "gpu_recipe.py"
TIMEOUT_S = 600


def test_pack_and_dry_run(tmp_path):
    data = tmp_path / "faces68"
    write_split(data, n=12, seed=0)
    write_split(data, n=4, split="test", seed=1)
    bundle, out = tmp_path / "bundle", tmp_path / "out"
    pack = subprocess.run([sys.executable, str(RECIPE), "pack", "--data", str(data), "--bundle", str(bundle),
                           "--set", "model.pretrained=false", "--quality", "90"],
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert pack.returncode == 0, pack.stderr[-3000:]
    info = json.loads((bundle / "bundle.json").read_text())
    assert info["faces"] == {"train": 12, "test": 4} and info["data_size"] == 384 and info["jpeg_quality"] == 90
    assert (bundle / "core" / "train.py").is_file() and not (bundle / "site").exists()  # no ImageNet init asked
    run = subprocess.run([sys.executable, str(bundle / "benchmarks" / "gpu_recipe.py"), "run", "--bundle", str(bundle),
                          "--out", str(out), "--work", str(tmp_path / "work"), "--dry-run",
                          "--set", "data.val_fraction=0.25", "--set", "batch_size=4"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == {"best.safetensors", "best.json", "config.json", "train.log",
                                               "eval_val.json", "eval_test.json", "report.json"}
    report = json.loads((out / "report.json").read_text())
    assert report["processes"] == 2 and report["precision"] == "fp32" and report["input_size"] == 64
    assert report["n_train"] == 9 and report["val"]["faces"] == 3 and report["test"]["faces"] == 4
    assert report["images_per_s_steady"] > 0 and 0 < report["test"]["nme"] < 10
    assert json.loads((out / "config.json").read_text())["model"]["pretrained"] is False
