"""Weights on disk: `<stem>.safetensors` (tensors) + `<stem>.json` (config, neighbourhood, input
size, training data). Training state (optimizer, epoch, RNG) uses the same pair of files, written
atomically so a kill never leaves a half-written checkpoint.

torch is imported only by the functions that need it (loading / saving tensors), so the weight
constants, stem_paths, read_meta and model_config serve the ONNX-only (torch-free) app."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ConfigError, DataConfig, ModelConfig, from_dict, to_dict

if TYPE_CHECKING:  # torch only when tensors are loaded or saved (the ONNX app runs without it)
    import torch

    from .models import LandmarkModel

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
# The package default (FaceAligner, evaluate, predict, export, bench_speed): the most accurate shipped
# model, the Wasserstein heatmap head. The app serves the graph-head / FC-head pair trained with one
# budget: its dynamic edges and the occlusion comparison are what the app demonstrates.
DEFAULT_WEIGHTS = WEIGHTS_DIR / "sdfl_wasserstein.safetensors"
GRAPH_WEIGHTS = WEIGHTS_DIR / "sdfl_graph.safetensors"
FC_WEIGHTS = WEIGHTS_DIR / "sdfl_fc.safetensors"
# The speed tier: the graph head at 64 px with a narrow fusion and a 1-block graph (configs/sdfl_fast.yaml).
FAST_WEIGHTS = WEIGHTS_DIR / "sdfl_fast.safetensors"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A missing, unreadable or incompatible checkpoint."""


def atomic_write(path: Path, write):
    """write(tmp) into a temporary file beside `path`, then rename it onto `path`: readers see the
    old file or the new one, never half of one. The file gets the usual permissions (0666 - umask),
    not mkstemp's 0600, so a server running as another user can read shipped weights."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def stem_paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def save_weights(path, model: LandmarkModel, meta: dict | None = None, extra_tensors: dict | None = None):
    """Write model weights (+ extra tensors, e.g. optimizer state) and the JSON metadata."""
    from safetensors.torch import save_file

    st_path, js_path = stem_paths(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors.update({k: v.detach().contiguous().cpu() for k, v in (extra_tensors or {}).items()})
    info = {"format": FORMAT_VERSION, "model": to_dict(model.cfg), "num_landmarks": model.cfg.num_landmarks,
            "input_size": model.cfg.input_size, "neighbours": model.neighbours.int().tolist(), **(meta or {})}
    # JSON first, tensors second: a checkpoint counts as complete once its tensors file exists.
    atomic_write(js_path, lambda t: Path(t).write_text(json.dumps(info, indent=1)))
    atomic_write(st_path, lambda t: save_file(tensors, t))


def read_meta(path) -> dict:
    _, js_path = stem_paths(path)
    if not js_path.is_file():
        raise CheckpointError(f"checkpoint metadata not found: {js_path}")
    try:
        return json.loads(js_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{js_path}: not valid JSON ({e})") from e


def load_tensors(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    st_path, _ = stem_paths(path)
    if not st_path.is_file():
        raise CheckpointError(f"weights not found: {st_path}")
    try:
        return load_file(str(st_path))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{st_path}: not a readable safetensors file ({e})") from e


def training_data_config(meta: dict) -> DataConfig:
    """The data config a checkpoint was trained with (defaults for weights saved without one), so
    its validation split can be rebuilt: core.data.train_val_split(training_data_config(meta), root)."""
    return from_dict(DataConfig, meta.get("train_config", {}).get("data", {}), "checkpoint data config")


TRAIN_STATE_PREFIX = "train."  # tensors of the training state (optimiser) saved beside the model's


def model_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's tensors of a checkpoint (without the training state)."""
    return {k: v for k, v in tensors.items() if not k.startswith(TRAIN_STATE_PREFIX)}


def model_config(meta: dict, path) -> ModelConfig:
    """The ModelConfig of a checkpoint's metadata (no ImageNet init); CheckpointError if incompatible."""
    try:
        return from_dict(ModelConfig, {**meta["model"], "pretrained": False}, "checkpoint model")
    except (KeyError, ConfigError) as e:
        raise CheckpointError(f"{path}: incompatible model config ({e})") from e


def load_model(path=None, device: str | torch.device = "cpu") -> tuple[LandmarkModel, dict]:
    """Rebuild the model from `<stem>.json` and load `<stem>.safetensors` strictly; eval mode."""
    from .models import build_model

    path = Path(path) if path else DEFAULT_WEIGHTS
    meta = read_meta(path)
    cfg = model_config(meta, path)
    model_tensors = model_state(load_tensors(path))
    if "neighbours" not in model_tensors or "mean_shape" not in model_tensors:
        raise CheckpointError(f"{path}: not a landmark-model checkpoint (no neighbours/mean_shape)")
    try:
        model = build_model(cfg, model_tensors["neighbours"], model_tensors["mean_shape"])
    except ValueError as e:  # e.g. a landmark count in the JSON that the tensors do not have
        raise CheckpointError(f"{path}: checkpoint of another shape ({e})") from e
    load_state_strict(model, model_tensors, str(path))
    return model.to(device).eval(), meta


# Buffers added after checkpoints were first written, with the value those checkpoints imply.
def _ones():
    import torch

    return torch.ones(())


LATER_BUFFERS = {"cov_scale": _ones}  # variance calibration (core.calibrate): none = 1


def load_state_strict(model: torch.nn.Module, state: dict, name: str):
    own = model.state_dict()
    state = {**{k: make() for k, make in LATER_BUFFERS.items() if k in own and k not in state}, **state}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{name}: checkpoint of another shape; missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}, mismatched {wrong[:5]}")
    model.load_state_dict(state, strict=True)
