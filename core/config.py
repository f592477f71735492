"""Typed configs. Every config is a dataclass; `from_dict` rejects unknown keys and wrong types."""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .landmarks import NUM_LANDMARKS


# A decimal number as users write it in YAML: 1e-3, 1.0E-3, .5, 5., +2, -1.5e+2, 1_000 (single
# underscores between digits). Not nan/inf, hex or empty strings: those stay "expected a number".
_DIGITS = r"\d(?:_?\d)*"
NUMBER = re.compile(rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?")


class ConfigError(ValueError):
    """A config with an unknown key, a wrong type or an invalid value."""


def _coerce(tp, value, where: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (typing.Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is typing.Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, where)
    if tp is float:
        if isinstance(value, str) and NUMBER.fullmatch(value.strip()):
            return float(value.strip().replace("_", ""))  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _drop_retired(cls, data: dict, where: str) -> dict:
    """Drop keys of concluded experiments (cls.RETIRED: key -> the only value still accepted, the
    behaviour every model has), so checkpoints and configs written before they left still load; any
    other value is refused with a pointer to the experiment's figures."""
    retired = getattr(cls, "RETIRED", {})
    for key in set(data) & set(retired):
        if data[key] != retired[key]:
            raise ConfigError(f"{where}.{key}: this switch was retired after its experiment (docs/EXPERIMENTS.md, "
                              f"occlusion robustness); only {retired[key]!r} is accepted, got {data[key]!r}")
    return {k: v for k, v in data.items() if k not in retired}


def from_dict(cls, data: dict, where: str = "config"):
    """Build dataclass `cls` from a mapping, refusing keys the dataclass does not declare."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    data = _drop_retired(cls, data, where)
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate:
        validate()
    return obj


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


@dataclass
class ModelConfig:
    backbone: typing.Literal["mobilenet_v2", "resnet18", "resnet34"] = "mobilenet_v2"
    head: typing.Literal["graph", "fc", "heatmap", "hybrid"] = "graph"
    num_landmarks: int = 68
    input_size: int = 192
    freeze_stem: bool = True  # keep the stride<=4 layers (ImageNet low-level filters, BN) frozen
    fusion: bool = True  # attention-guided multi-scale fusion + semantic-guided CBAM
    channels: int = 128  # fused feature channels
    node_channels: int = 4  # n in map-to-node (N*n channels)
    k: int = 3  # neighbours per landmark (plus self): landmark i hears its own top k
    adjacency: typing.Literal["dynamic", "binary"] = "dynamic"
    graph_blocks: int = 4
    graph_hidden: int = 128
    fc_hidden: int = 256
    fc_node_dim: int = 32  # FC heads: each node's features projected to this many before the dense layers
    uncertainty: bool = True
    pretrained: bool = True  # ImageNet init of MobileNetV2 when the file is installed
    # heatmap / hybrid heads (core.models.heatmap); ignored by the graph and fc heads
    heatmap_stride: int = 4  # heatmaps at 1/4 (or 1/8) of the input
    readout: typing.Literal["soft_argmax", "get_max", "get_bc"] = "soft_argmax"  # heatmap -> coordinates
    # hybrid head (core.models.refine): node features local to each landmark (heatmap-attended pooling +
    # rings sampled at the estimate) or the whole-crop map-to-node (ablation); graph stages after the
    # first that re-sample at the refined positions
    node_features: typing.Literal["local", "whole"] = "local"
    refine_stages: int = 0
    stage_head: typing.Literal["graph", "fc"] = "graph"  # hybrid: "fc" = the baseline on the same nodes

    # Switches of concluded experiments (none made the graph head lose less under occlusion; figures in
    # docs/EXPERIMENTS.md and benchmarks/results/occlusion_training_*): accepted at these values only.
    RETIRED: typing.ClassVar[dict] = {"edges": "directed", "edge_reliability": False, "graph_context": False,
                                      "node_dropout": 0.0}

    @property
    def dynamic_adjacency(self) -> bool:
        """Whether the head predicts per-image edge weights (graph or hybrid head with dynamic
        adjacency); otherwise its adjacency output is the fixed, row-normalised neighbourhood."""
        if self.head == "hybrid":
            return self.adjacency == "dynamic" and self.stage_head == "graph"
        return self.head == "graph" and self.adjacency == "dynamic"

    def validate(self):
        if self.num_landmarks < 2:
            raise ConfigError("model.num_landmarks must be >= 2")
        if not 1 <= self.k < self.num_landmarks:
            raise ConfigError(f"model.k must be in [1, {self.num_landmarks - 1}], got {self.k}")
        if self.input_size % 32:
            raise ConfigError(f"model.input_size must be a multiple of 32, got {self.input_size}")
        if not 0 <= self.refine_stages <= 3:
            raise ConfigError(f"model.refine_stages must be in [0, 3], got {self.refine_stages}")
        if self.fc_hidden < 1 or self.fc_node_dim < 1:
            raise ConfigError(f"model.fc_hidden and model.fc_node_dim must be >= 1, got {self.fc_hidden}, "
                              f"{self.fc_node_dim}")
        if self.stage_head != "graph" and self.head != "hybrid":
            raise ConfigError(f"model.stage_head applies to the hybrid head, not {self.head!r}")
        if self.refine_stages and self.head != "hybrid":
            raise ConfigError(f"model.refine_stages applies to the hybrid head, not {self.head!r}")
        if self.heatmap_stride not in (4, 8):
            raise ConfigError(f"model.heatmap_stride must be 4 or 8, got {self.heatmap_stride}")
        if self.head in ("heatmap", "hybrid") and self.num_landmarks != NUM_LANDMARKS:
            raise ConfigError(f"model.head {self.head!r} draws edge heatmaps on the 68-point curves; "
                              f"num_landmarks must be {NUM_LANDMARKS}, got {self.num_landmarks}")


HEATMAP_SIGMAS = (1.0, 1.5, 3.0)  # allowed loss.heatmap_sigma values (heatmap pixels)


@dataclass
class LossConfig:
    coord: typing.Literal["soft_wing", "wing", "l1", "smooth_adl1", "adl"] = "soft_wing"
    laplacian: float = 1.0  # weight of the Laplacian relative-location loss (0 = off)
    adl_lambda: float = 2.0
    nll: float = 0.05  # weight of the Gaussian NLL of the uncertainty head
    # heatmap / hybrid heads only (core.heatmap_losses); unused when the model outputs no heatmaps
    heatmap: typing.Literal["awing", "l2", "wasserstein"] = "awing"  # loss on the landmark heatmaps
    heatmap_weight: float = 1.0  # weight of the heatmap terms (landmark maps; point + edge maps, AWing)
    heatmap_sigma: float = 1.5  # target Gaussian sigma in heatmap pixels: 1, 1.5 or 3
    stage_weight: float = 0.5  # hybrid head: weight of the coord loss on each graph stage before the last

    def validate(self):
        if self.heatmap_sigma not in HEATMAP_SIGMAS:
            raise ConfigError(f"loss.heatmap_sigma must be one of {HEATMAP_SIGMAS}, got {self.heatmap_sigma}")
        if self.heatmap_weight < 0:
            raise ConfigError(f"loss.heatmap_weight must be >= 0, got {self.heatmap_weight}")



@dataclass
class AugmentConfig:
    rotation: float = 40.0  # degrees, +-
    scale: float = 0.10  # +-
    translation: float = 0.05  # of the crop side, +-
    flip: float = 0.5
    occlusion: float = 0.4  # probability of a random occluding patch (~20 % of the image)
    # share of those occluders placed over the face instead (ellipse or rectangle, 10-40 % of the
    # landmark box's side, solid colour, noise or texture from elsewhere in the crop): hands, phones, hair
    occlusion_on_face: float = 0.0
    color: float = 0.8
    blur: float = 0.2
    blur_length: float = 0.0  # > 0: motion-blur lines up to this fraction of the crop side (else 3-11 px)
    rotation_prob: float = 0.6  # large rotations are applied with this probability
    # probability of a low-resolution source: the crop is shrunk to a side drawn log-uniformly from
    # [lowres_min_side, input size) and enlarged back (small faces, webcam and video frames)
    lowres: float = 0.0
    lowres_min_side: int = 48
    # probability of a webcam's degradations, last (core.camera.TRAINING: low light, sensor noise, JPEG)
    camera: float = 0.0
    # side (px) of the crop those degradations are drawn at; a smaller input is enlarged to it and shrunk back
    # after, as a webcam degrades a face before the app shrinks it (0: the input size)
    camera_side: int = 0

    def validate(self):
        if not 0.0 <= self.occlusion_on_face <= 1.0 or not 0.0 <= self.blur_length < 0.5:
            raise ConfigError(f"augment.occlusion_on_face must be a probability and blur_length in [0, 0.5): "
                              f"{self.occlusion_on_face}, {self.blur_length}")
        if not 0.0 <= self.camera <= 1.0 or self.camera_side < 0:
            raise ConfigError(f"augment.camera must be a probability and camera_side >= 0: "
                              f"{self.camera}, {self.camera_side}")
        if not 0.0 <= self.lowres <= 1.0 or self.lowres_min_side < 8:
            raise ConfigError(f"augment.lowres must be a probability and lowres_min_side >= 8 px: "
                              f"{self.lowres}, {self.lowres_min_side}")


@dataclass
class DataConfig:
    root: str = "../shared/data/faces68"
    train_split: str = "train"
    val_fraction: float = 0.1  # held out from train by photo
    split_seed: int = 0
    extra_split: str = ""  # e.g. "extra": noisier labelled faces added to training
    extra_weight: float = 0.5
    # share of extra_split's identities (its `photo` field) held out of training (seed split_seed), so
    # that NME on the faces of people no model trained on stays measurable (benchmarks/unseen.py --holdout)
    extra_holdout: float = 0.0
    extra_offsets: str = ""  # JSON {"offsets": (N, 2)}: extra_split's labels mapped by core.data.mapped_convention
    pseudo_labels: str = ""  # JSON lines of teacher labels (core.pseudo_labels), added to training
    pseudo_weight: float = 0.5
    balance: bool = False  # pose-based balancing (shape PCA, 9 bins)
    limit: int = 0  # use at most this many training faces (0 = all); for quick runs
    cache: bool = True  # keep decoded images in memory

    def validate(self):
        if not 0.0 <= self.extra_holdout < 1.0:
            raise ConfigError(f"data.extra_holdout must be in [0, 1), got {self.extra_holdout}")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 60
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    workers: int = 2
    threads: int = 0  # torch CPU threads (0 = all cores)
    device: str = "cpu"  # "cpu", "cuda", "cuda:0", or "auto"
    seed: int = 0
    val_every: int = 1
    time_limit_min: float = 0.0  # stop (resumable) after this many minutes (0 = no limit)
    init_weights: str = ""  # fine-tune: start from this checkpoint's model weights (same model config)
    # warm start: copy every tensor of this checkpoint whose name and shape match (e.g. a heatmap head's
    # backbone, decoder and attention into a hybrid head); the rest starts fresh
    init_features: str = ""
    # top-level model modules kept frozen (eval-mode BN, no gradients), e.g. a warm-started hybrid head's
    # ["backbone", "decoder", "attention"] so that only its graph stages train
    freeze: list[str] = field(default_factory=list)
    # learning-rate multiplier per top-level module, e.g. {backbone: 0.1} to fine-tune a warm-started
    # backbone gently while the heads train at lr (modules not named: 1.0)
    lr_scale: dict[str, float] = field(default_factory=dict)
    # exponential moving average of the weights (core.ema), validated and saved as best; 0 = off
    ema_decay: float = 0.0
    # Scaling (core.distributed; docs/TRAINING.md). batch_size is the global batch: under torchrun each of
    # the W processes takes batch_size / W. Mixed precision is for CUDA.
    precision: typing.Literal["fp32", "bf16", "fp16"] = "fp32"  # bf16/fp16: autocast (fp16 with a GradScaler)
    channels_last: bool = False  # NHWC activations and weights (faster convolutions on tensor cores)
    sync_bn: bool = True  # under torchrun, BatchNorm statistics over the global batch (SyncBatchNorm)

    def validate(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be >= 1")
        if self.init_weights and self.init_features:
            raise ConfigError("init_weights and init_features are exclusive: choose one")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if any(not v > 0 for v in self.lr_scale.values()):
            raise ConfigError(f"lr_scale values must be > 0 (freeze a module instead): {self.lr_scale}")


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config; overrides are 'a.b=value' strings (YAML-parsed values)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} must look like key.sub=value")
        key, val = ov.split("=", 1)
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node, dict):
                break
            node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {ov!r}: {'.'.join(parts[:-1]) or path} is not a mapping")
        node[parts[-1]] = yaml.safe_load(val)
    return from_dict(TrainConfig, data, str(path))
