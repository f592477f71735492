"""Shared fixtures: small synthetic models and faces, so no test needs ../shared or shipped weights."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import save_weights
from core.config import ModelConfig
from core.graph import neighbourhood
from core.models import build_model

torch.set_num_threads(1)
ASTRONAUT = Path(__file__).resolve().parent.parent / "app" / "examples" / "astronaut.jpg"


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """The example photo (512 x 512 RGB, one face), decoded once; tests must not write into it."""
    from core.images import load_image

    return load_image(ASTRONAUT)


def synthetic_shapes(n_faces: int = 64, seed: int = 0) -> np.ndarray:
    """(S, 68, 2) plausible face shapes in crop units: a template warped by random similarity
    transforms and small noise."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, np.pi, 17)
    jaw = np.stack([0.5 - 0.35 * np.cos(t), 0.45 + 0.35 * np.sin(t)], 1)
    brows = np.stack([np.r_[np.linspace(0.22, 0.42, 5), np.linspace(0.58, 0.78, 5)], np.full(10, 0.3)], 1)
    nose = np.stack([np.r_[np.full(4, 0.5), np.linspace(0.42, 0.58, 5)], np.r_[np.linspace(0.38, 0.55, 4), np.full(5, 0.6)]], 1)
    a = np.linspace(0, 2 * np.pi, 7)[:-1]
    eyes = np.concatenate([np.stack([c + 0.07 * np.cos(a), 0.4 + 0.03 * np.sin(a)], 1) for c in (0.33, 0.67)])
    b = np.linspace(0, 2 * np.pi, 13)[:-1]
    outer = np.stack([0.5 + 0.15 * np.cos(b + np.pi), 0.75 + 0.06 * np.sin(b + np.pi)], 1)
    c = np.linspace(0, 2 * np.pi, 9)[:-1]
    inner = np.stack([0.5 + 0.1 * np.cos(c + np.pi), 0.75 + 0.03 * np.sin(c + np.pi)], 1)
    tmpl = np.concatenate([jaw, brows, nose, eyes, outer, inner])
    assert tmpl.shape == (68, 2)
    out = []
    for _ in range(n_faces):
        ang = rng.normal(0, 0.15)
        s = rng.uniform(0.9, 1.1)
        r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) * s
        shp = (tmpl - 0.5) @ r.T + 0.5 + rng.normal(0, 0.02, 2) + rng.normal(0, 0.004, tmpl.shape)
        out.append(shp)
    return np.stack(out).astype(np.float32)


def link_prior(weights: Path, folder: Path, shapes: np.ndarray | None = None, name: str = "prior.json") -> Path:
    """`weights` (<stem>.safetensors + .json, and any <stem>.onnx) copied into `folder` (unless already
    there) with a shape prior fitted on `shapes` (default: synthetic_shapes(64)) saved beside them
    and named in the JSON, as the shipped models name theirs (core.shape_prior). Returns the copy."""
    import json
    import shutil

    from core.shape_prior import META_KEY, ShapePrior

    weights, folder = Path(weights), Path(folder)
    for f in weights.parent.glob(weights.stem + ".*"):
        if f.parent != folder and f.suffix in (".safetensors", ".json", ".onnx"):
            shutil.copy(f, folder / f.name)
    ShapePrior.fit(synthetic_shapes(64) if shapes is None else shapes).save(folder / name)
    js = folder / f"{weights.stem}.json"
    js.write_text(json.dumps({**json.loads(js.read_text()), META_KEY: name}))
    return folder / f"{weights.stem}.safetensors"


TINY_CONFIG = dict(input_size=64, channels=32, graph_hidden=32, graph_blocks=2, fc_hidden=32, pretrained=False)


@pytest.fixture(scope="session")
def shapes():
    return synthetic_shapes()


def _tiny_model_file(tmp_path_factory, shapes, name: str, seed: int, **cfg):
    """A tiny random model of TINY_CONFIG (+ cfg) saved in the shipped format as <name>.safetensors."""
    torch.manual_seed(seed)
    config = ModelConfig(**TINY_CONFIG, **cfg)
    model = build_model(config, neighbourhood(shapes, config.k), shapes.mean(0))
    path = tmp_path_factory.mktemp("weights") / f"{name}.safetensors"
    save_weights(path, model.eval(), {"train_data": "synthetic"})
    return path


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory, shapes):
    """Path to a tiny random graph-head model saved in the shipped format."""
    return _tiny_model_file(tmp_path_factory, shapes, "tiny_graph", 0)


@pytest.fixture(scope="session")
def tiny_heatmap_weights(tmp_path_factory, shapes):
    """A tiny random heatmap-head model (the package default's kind: GET_BC read-out)."""
    return _tiny_model_file(tmp_path_factory, shapes, "tiny_heatmap", 2, head="heatmap", readout="get_bc")


@pytest.fixture(scope="session")
def tiny_fc_weights(tmp_path_factory, shapes):
    return _tiny_model_file(tmp_path_factory, shapes, "tiny_fc", 1, head="fc")


@pytest.fixture(scope="session")
def train_root(tmp_path_factory) -> Path:
    """12 synthetic photos in faces68 layout (9 train + 3 validation) for the training tests."""
    from synth_faces import write_split

    root = tmp_path_factory.mktemp("faces68")
    write_split(root, n=12, max_angle=25, seed=0)
    return root


@pytest.fixture(scope="session")
def straight_run(tmp_path_factory, train_root) -> Path:
    """3 epochs in one go (tiny MobileNetV2 graph model, all augmentations on): the reference run
    of the resume, fine-tuning and fault tests, which only read it."""
    from core.train import main
    from train_runs import cfg_dict, write_cfg

    tmp = tmp_path_factory.mktemp("straight")
    cfg = write_cfg(tmp / "cfg.yaml", cfg_dict(train_root))
    assert main(["--config", cfg, "--out", str(tmp / "run")]) == 0
    return tmp / "run"


@pytest.fixture(scope="module")
def demo(tiny_weights, tiny_fc_weights, tmp_path_factory):
    """The Gradio app on the tiny weights, its Benchmark tab reading a results folder of its own (per module)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from app.ui import build_demo

    results = tmp_path_factory.mktemp("results")
    d = build_demo(tiny_weights, tiny_fc_weights, results_dir=results, webcam_slots=1)
    d.results_dir = results
    yield d
    d.close()
