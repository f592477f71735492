"""Weights on disk: `<stem>.safetensors` (tensors) + `<stem>.json` (config, neighbourhood, input
size, training data). Training state (optimizer, epoch, RNG) uses the same pair of files.

The pair is one atomic unit: the tensors file is written first (temp file + rename) and carries
the metadata inside its own header (safetensors metadata key META_KEY, with a random save_id);
the JSON, written second, is a readable copy that also records the tensors file's SHA-256.
verified_meta() verifies the pair: a JSON from another save (a kill between the two renames)
is replaced by the tensors' own metadata, loudly (CheckpointPairWarning), so nothing is lost and
epoch and weights always match (`--resume` rewrites the JSON); load_model refuses such a pair
(check_pair). A tensors file whose hash differs from the JSON of the same save is refused. Pairs
written before this scheme (no hash, no embedded metadata) load unverified.

torch is imported only by the functions that need it (loading / saving tensors), so the weight
constants, stem_paths, read_meta and model_config serve the ONNX-only (torch-free) app."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ConfigError, DataConfig, ModelConfig, from_dict, to_dict

if TYPE_CHECKING:  # torch only when tensors are loaded or saved (the ONNX app runs without it)
    import torch

    from .models import LandmarkModel

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
# The package default, and the app's one model (FaceAligner, evaluate, predict, export, bench_speed, the
# app's upload tab, webcam (int8), API and the graph side of the occlusion demo): the flagship, a
# heatmap-to-graph hybrid with local node features and a refinement stage (configs/sdfl_flagship*.yaml).
# The occlusion demo's baseline: FC stages on the flagship's own frozen features, trained with phase 1's
# recipe (configs/sdfl_flagship_fc.yaml). The Wasserstein heatmap head is the flagship's warm start and a
# benchmark row.
WASSERSTEIN_WEIGHTS = WEIGHTS_DIR / "sdfl_wasserstein.safetensors"
FLAGSHIP_WEIGHTS = WEIGHTS_DIR / "sdfl_flagship.safetensors"
DEFAULT_WEIGHTS = FLAGSHIP_WEIGHTS
FC_WEIGHTS = WEIGHTS_DIR / "sdfl_flagship_fc.safetensors"
# The speed tier: the flagship's hybrid model at 64 px, one graph block, distilled (configs/sdfl_fast_camera.yaml).
FAST_WEIGHTS = WEIGHTS_DIR / "sdfl_fast.safetensors"
FORMAT_VERSION = 1


META_KEY = "sdfl_meta"  # the JSON metadata, stored again inside the tensors file's header
HASH_CHUNK = 1 << 22


class CheckpointError(ValueError):
    """A missing, unreadable or incompatible checkpoint."""


class CheckpointPairWarning(UserWarning):
    """The JSON of a checkpoint came from another save than its tensors (an interrupted save)."""


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
            "input_size": model.cfg.input_size, "neighbours": model.neighbours.int().tolist(), **(meta or {}),
            "save_id": uuid.uuid4().hex}
    # Tensors (with the metadata inside) first: that one file is the atomic unit; the JSON follows.
    atomic_write(st_path, lambda t: save_file(tensors, t, metadata={META_KEY: json.dumps(info)}))
    _write_json(js_path, {**info, "tensors_sha256": file_sha256(st_path)})


def _write_json(js_path: Path, info: dict):
    atomic_write(js_path, lambda t: Path(t).write_text(json.dumps(info, indent=1)))


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def embedded_meta(path) -> dict | None:
    """The metadata stored inside a tensors file (None for files written before it was)."""
    from safetensors import safe_open  # the header only: no tensor framework needed

    st_path, _ = stem_paths(path)
    try:
        with safe_open(str(st_path), "np") as f:
            text = (f.metadata() or {}).get(META_KEY)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{st_path}: not a readable safetensors file ({e})") from e
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{st_path}: unreadable embedded metadata ({e})") from e


def verified_meta(path, repair: bool = False) -> dict:
    """The metadata of a checkpoint, checked against its tensors file (see the module docstring).
    A JSON from another save is replaced by the tensors' own metadata (rewritten on disk when
    `repair`); CheckpointError when the tensors file is not the one its JSON hashed."""
    st_path, js_path = stem_paths(path)
    if not st_path.is_file():
        raise CheckpointError(f"weights not found: {st_path}")
    inner = embedded_meta(st_path)
    try:
        outer = read_meta(path)
    except CheckpointError:
        if inner is None:
            raise
        outer = None
    if inner is None:  # written before the pair was verifiable
        return outer
    if outer is None or outer.get("save_id") != inner.get("save_id"):
        said = "missing or unreadable" if outer is None else f"from another save (epoch {outer.get('epoch')})"
        warnings.warn(f"{js_path} is {said}, not the one of {st_path.name} (epoch {inner.get('epoch')}): an "
                      f"interrupted save. Using the metadata stored inside {st_path.name}"
                      f"{' and rewriting the JSON' if repair else ''}.", CheckpointPairWarning, stacklevel=2)
        fixed = {**inner, "tensors_sha256": file_sha256(st_path)}
        if repair:
            _write_json(js_path, fixed)
        return fixed
    sha = outer.get("tensors_sha256")
    if sha is not None and sha != file_sha256(st_path):
        raise CheckpointError(f"{st_path} does not match {js_path.name} (SHA-256 differs): the tensors file was "
                              "modified or damaged after it was saved; refusing it")
    return outer


def check_pair(path, meta: dict):
    """Refuse (CheckpointError) a JSON `meta` that is not the one saved with the tensors file
    (another save_id, or another SHA-256); pairs written before the scheme pass unverified.
    load_model refuses such pairs; `--resume` repairs them instead (verified_meta(repair=True))."""
    st_path, js_path = stem_paths(path)
    inner = embedded_meta(st_path)
    if inner is not None and meta.get("save_id") != inner.get("save_id"):
        raise CheckpointError(f"{path}: mismatched checkpoint pair: {js_path.name} (epoch {meta.get('epoch')}) comes "
                              f"from different saves than {st_path.name} (epoch {inner.get('epoch')}); an interrupted "
                              "save or files mixed by hand; refusing it (core.train --resume repairs its own run)")
    sha = meta.get("tensors_sha256")
    if sha is not None and sha != file_sha256(st_path):
        raise CheckpointError(f"{st_path} does not match {js_path.name} (SHA-256 differs): the tensors file was "
                              "modified or damaged after it was saved; refusing it")


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


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """An optimiser's state as checkpoint tensors (`train.opt.*`) and the metadata to restore it."""
    import torch

    sd = opt.state_dict()
    tensors = {f"{TRAIN_STATE_PREFIX}opt.{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v))
               for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, {"param_groups": sd["param_groups"], "state_keys": {str(i): list(st) for i, st in sd["state"].items()}}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict):
    """Inverse of `optimizer_tensors`."""
    state = {int(i): {k: tensors[f"{TRAIN_STATE_PREFIX}opt.{i}.{k}"] for k in keys} for i, keys in meta["state_keys"].items()}
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


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
    check_pair(path, meta)
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
