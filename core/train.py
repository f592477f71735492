"""Train the landmark model.

    python -m core.train --config configs/sdfl_graph.yaml --out runs/sdfl_graph [--resume] [--set a.b=v]
    torchrun --nproc_per_node=N -m core.train --config ... --out ...     (data-parallel, docs/TRAINING.md)

Writes <out>/last.* every epoch (atomic; `--resume` continues from it, losing at most the epoch in
progress) and <out>/best.* (chosen on the validation split held out from train, never on test).
Under torchrun, batch_size is the global batch and rank 0 alone validates, writes and logs."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import distributed

from .checkpoint import (TRAIN_STATE_PREFIX, CheckpointError, load_optimizer, load_state_strict, load_tensors, model_state,
                         optimizer_tensors, read_meta, save_weights, verified_meta)
from .config import ConfigError, ModelConfig, TrainConfig, from_dict, load_config, to_dict
from .data import (DataError, FaceDataset, load_jsonl, mapped_convention, normalized_shapes, pose_balance_weights,
                   split_by_photo, train_val_split)
from .ema import WeightAverage
from .graph import neighbourhood
from .heatmap_losses import heatmap_loss_parts
from .losses import COORD_LOSSES, adl_loss, gaussian_nll, laplacian_loss, smooth_adl1_loss
from .metrics import nme
from .models import LandmarkModel, build_model


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return dev


def frozen_modules(model: LandmarkModel, prefixes: tuple[str, ...] = ()) -> list[torch.nn.Module]:
    """The stride<=4 layers kept frozen when model.freeze_stem (ImageNet low-level filters), and the
    top-level modules named in `prefixes` (TrainConfig.freeze)."""
    out = [m for name, m in model.named_children() if name in prefixes]
    if not model.cfg.freeze_stem:
        return out
    bb = model.backbone
    if model.cfg.backbone == "mobilenet_v2":
        return out + list(bb.features[:4])
    return out + [bb.conv1, bb.bn1, bb.layer1]


def set_train_mode(model: LandmarkModel, freeze: tuple[str, ...] = ()):
    """Training mode, except the frozen modules: eval mode (BN statistics kept), no gradients."""
    model.train()
    for m in frozen_modules(model, tuple(freeze)):
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)


def param_groups(model: torch.nn.Module, lr_scale: dict[str, float]) -> list[dict]:
    """Trainable parameters grouped by learning-rate multiplier: one group per top-level module named in
    lr_scale (key "scale"), one group (scale 1) for the rest."""
    groups = []
    for name, module in model.named_children():
        if name in lr_scale:
            groups.append({"params": [p for p in module.parameters() if p.requires_grad], "scale": lr_scale[name]})
    scaled = {id(p) for g in groups for p in g["params"]}
    groups.append({"params": [p for p in model.parameters() if p.requires_grad and id(p) not in scaled], "scale": 1.0})
    return [g for g in groups if g["params"]]


def coord_loss(lc, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """The configured coordinate loss (loss.coord) on (B, N, 2) input pixels."""
    if lc.coord == "adl":
        return adl_loss(pred, gt, lc.adl_lambda)
    if lc.coord == "smooth_adl1":
        return smooth_adl1_loss(pred, gt, lc.adl_lambda)
    return COORD_LOSSES[lc.coord](pred, gt)


def compute_loss(cfg: TrainConfig, model: LandmarkModel, out: dict, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Total loss in input pixels: coord + w_stage * sum_s coord(stage s) + w_lap * Laplacian
    + w_nll * NLL(detached coords) (+ heatmap terms)."""
    s = model.cfg.input_size
    pred, gt = out["coords"] * s, target * s
    lc = cfg.loss
    parts = {"coord": coord_loss(lc, pred, gt)}
    if out.get("stage_coords") and lc.stage_weight > 0:  # hybrid head: graph stages before the last
        parts["stages"] = lc.stage_weight * sum(coord_loss(lc, c * s, gt) for c in out["stage_coords"])
    if lc.laplacian > 0:
        parts["lap"] = lc.laplacian * laplacian_loss(pred, gt, model.neighbours)
    if lc.nll > 0 and "cov" in out:
        parts["nll"] = lc.nll * gaussian_nll(pred, gt, out["cov"] * s * s)
    if "heatmaps" in out and lc.heatmap_weight > 0:  # heatmap / hybrid heads: targets from the ground truth
        parts.update(heatmap_loss_parts(lc, model.cfg, out, target))
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up, then cosine decay to 1 % of the base rate."""
    warm = cfg.warmup_epochs * steps_per_epoch
    total = cfg.epochs * steps_per_epoch
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(total - warm, 1)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


@torch.inference_mode()
def predict_dataset(model: LandmarkModel, ds: FaceDataset, device, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(pred, gt) in crop pixels for a dataset without augmentation."""
    model.eval()
    preds, gts = [], []
    for x, y, _ in DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0):
        preds.append(model(x.to(device))["coords"].float().cpu().numpy())
        gts.append(y.numpy())
    s = model.cfg.input_size
    return np.concatenate(preds) * s, np.concatenate(gts) * s


class Trainer:
    def __init__(self, cfg: TrainConfig, out: Path):
        self.cfg, self.out = cfg, out
        self.dist = distributed.current()  # world size 1 unless started by torchrun
        self.device = distributed.rank_device(resolve_device(cfg.device), self.dist)
        self.batch = distributed.per_rank_batch(cfg.batch_size, self.dist)
        self.amp = distributed.MixedPrecision(cfg.precision, self.device)
        torch.manual_seed(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        dc = cfg.data
        root = Path(dc.root)
        self.train_records, self.val_records = train_val_split(dc)
        if dc.limit:
            self.train_records = self.train_records[: dc.limit]
            self.val_records = self.val_records[: max(dc.limit // 4, 8)]
        if not self.val_records:
            raise DataError("validation split is empty: raise data.val_fraction")
        size = cfg.model.input_size
        shapes = normalized_shapes(self.train_records, size)  # graph and mean shape: training split only
        self.neighbours = neighbourhood(shapes, cfg.model.k)
        self.mean_shape = shapes.mean(0)
        weights = np.ones(len(self.train_records))
        if dc.balance:
            weights *= pose_balance_weights(shapes)
        added = []
        if dc.extra_split:
            added.append((root / f"{dc.extra_split}.jsonl", dc.extra_weight, dc.extra_holdout, dc.extra_offsets))
        added += [(Path(dc.pseudo_labels), dc.pseudo_weight, 0.0, "")] if dc.pseudo_labels else []
        for path, weight, holdout, offsets in added:  # after the graph and mean shape are fixed, at their own weight
            more = split_by_photo(load_jsonl(path), holdout, dc.split_seed)[0]
            more = mapped_convention(more, offsets) if offsets else more
            self.train_records += more
            weights = np.r_[weights, np.full(len(more), weight)]
        self.sample_weights = weights
        self.train_ds = FaceDataset(self.train_records, size, cfg.augment, cache=dc.cache, seed=cfg.seed,
                                    uint8=self.device.type == "cuda")
        self.val_ds = FaceDataset(self.val_records, size, None, cache=dc.cache)
        self.model = build_model(cfg.model, self.neighbours, self.mean_shape).to(self.device)
        children = sorted(name for name, _ in self.model.named_children())
        for key, names in (("freeze", cfg.freeze), ("lr_scale", cfg.lr_scale)):
            unknown = sorted(set(names) - set(children))
            if unknown:
                raise ConfigError(f"{key}: {unknown} are not modules of this model; choose from {children}")
        self.imagenet_init = bool(getattr(self.model.backbone, "imagenet_init", False))
        if cfg.model.pretrained and not self.imagenet_init:
            print("WARNING: model.pretrained is true but no ImageNet weights were loaded: training starts from "
                  "random weights; the checkpoint records pretrained: false (see requirements-train.txt)",
                  file=sys.stderr)
        if self.dist.active and cfg.sync_bn:
            self.model = distributed.sync_batchnorm(self.model, self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if cfg.init_weights:
            self.init_from(Path(cfg.init_weights))
        if cfg.init_features:
            self.warm_start(Path(cfg.init_features))
        set_train_mode(self.model, self.cfg.freeze)
        self.opt = torch.optim.AdamW(param_groups(self.model, cfg.lr_scale), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.ema = WeightAverage(self.model, cfg.ema_decay) if cfg.ema_decay else None  # validated and saved as best
        self.epoch, self.best, self.history = 0, float("inf"), []
        self.elapsed_s = 0.0  # training time of earlier sessions (--resume continues the clock)

    def same_model(self, path: Path) -> bool:
        """Whether checkpoint `path` holds this run's model config (fields added since it was written
        take their defaults; `pretrained` only decides the initialisation, so it is not compared)."""
        try:
            saved = to_dict(from_dict(ModelConfig, read_meta(path).get("model"), f"{path} model"))
        except ConfigError:
            return False
        return {**saved, "pretrained": None} == {**to_dict(self.cfg.model), "pretrained": None}

    def init_from(self, path: Path):
        """Fine-tuning: the model weights of another run (same model config and training split, so
        the same neighbourhood); optimiser and schedule start afresh. --resume overrides this."""
        if not self.same_model(path):
            raise CheckpointError(f"{path}: its model config differs from --config; cannot initialise from it")
        tensors = model_state(load_tensors(path))
        if not torch.equal(tensors["neighbours"].to(self.model.neighbours.dtype), self.model.neighbours.cpu()):
            raise CheckpointError(f"{path}: trained with another neighbourhood (another training split or k)")
        load_state_strict(self.model, tensors, str(path))  # copies into the parameters, on their device

    def warm_start(self, path: Path):
        """Copy the tensors of checkpoint `path` whose names and shapes match this model's (buffers
        that describe the training split, such as the neighbourhood and mean shape, are not copied)."""
        own = self.model.state_dict()
        skip = {"neighbours", "mean_shape", "cov_scale"}
        copied = {k: v for k, v in model_state(load_tensors(path)).items()
                  if k in own and k not in skip and tuple(v.shape) == tuple(own[k].shape)}
        if not copied:
            raise CheckpointError(f"{path}: no tensor matches this model; cannot warm-start from it")
        with torch.no_grad():
            for k, v in copied.items():
                own[k].copy_(v.to(own[k].dtype))
        self.warm_started = {"from": str(path), "tensors": len(copied), "of": len(own)}
        print(f"warm start from {path}: {len(copied)} of {len(own)} tensors", file=sys.stderr)

    def meta(self) -> dict:
        return {"train_config": to_dict(self.cfg), "epoch": self.epoch, "best_val_nme": self.best,
                "history": self.history, "elapsed_s": round(self.elapsed_s, 1), "imagenet_init": self.imagenet_init,
                "train_data": self.data_description(),
                "n_train": len(self.train_records), "n_val": len(self.val_records)}

    def data_description(self) -> str:
        dc = self.cfg.data
        s = f"faces68 {dc.train_split} minus a {dc.val_fraction:.0%} validation split by photo (seed {dc.split_seed})"
        held = f", {dc.extra_holdout:.0%} of its identities held out (seed {dc.split_seed})" if dc.extra_holdout else ""
        held += f", labels mapped by {dc.extra_offsets}" if dc.extra_offsets else ""
        s += f" + {dc.extra_split} (sampling weight {dc.extra_weight}{held})" if dc.extra_split else ""
        return s + (f" + pseudo-labels {dc.pseudo_labels} (sampling weight {dc.pseudo_weight})" if dc.pseudo_labels else "")

    def save(self, best: bool):
        tensors, opt_meta = optimizer_tensors(self.opt)
        tensors.update(self.ema.tensors(TRAIN_STATE_PREFIX) if self.ema else {})
        save_weights(self.out / "last", self.model, {**self.meta(), "optimizer": opt_meta}, tensors)
        if best:
            with self.ema.applied(self.model) if self.ema else contextlib.nullcontext():
                save_weights(self.out / "best", self.model, self.meta())

    def log(self, msg: str, stdout: bool = False):
        """A message from rank 0 alone (stderr unless stdout)."""
        if self.dist.is_main:
            tqdm.write(msg, file=sys.stdout if stdout else sys.stderr)

    def resume(self):
        path = self.out / "last.safetensors"
        self._resume(path)
        # every rank must read the same checkpoint: on several nodes --out has to be a shared folder
        distributed.same_on_all_ranks(self.epoch, f"the epoch resumed from {path} (is --out shared by all nodes?)",
                                      self.dist)

    def _resume(self, path: Path):
        if not path.is_file():
            self.log(f"no checkpoint at {path}: starting from scratch")
            return
        meta = verified_meta(path, repair=True)  # a JSON from an interrupted save is replaced, loudly
        if not self.same_model(path):
            raise CheckpointError(f"{path}: model config differs from --config; use another --out")
        tensors = load_tensors(path)
        load_state_strict(self.model, model_state(tensors), str(path))
        load_optimizer(self.opt, tensors, meta["optimizer"])
        if self.ema and not self.ema.load(tensors, TRAIN_STATE_PREFIX):
            self.ema = WeightAverage(self.model, self.cfg.ema_decay)
            self.log(f"{path} holds no weight average: it restarts from the resumed weights")
        self.epoch, self.best, self.history = meta["epoch"], meta["best_val_nme"], meta["history"]
        self.elapsed_s = float(meta.get("elapsed_s", self.history[-1]["time_s"] if self.history else 0.0))
        self.imagenet_init = bool(meta.get("imagenet_init", self.imagenet_init))  # how the run was initialised
        self.model.cfg = dataclasses.replace(self.model.cfg, pretrained=self.cfg.model.pretrained and self.imagenet_init)
        self.log(f"resumed from {path} after epoch {self.epoch} (best val NME {self.best:.4f})")

    def loader(self) -> DataLoader:
        """This rank's share of the epoch's global batches (the same global order for any world size)."""
        sampler = distributed.ShardedWeightedSampler(self.sample_weights, len(self.train_ds), self.batch,
                                                     self.cfg.seed, self.dist.rank, self.dist.world)
        sampler.set_epoch(self.epoch)
        cuda = self.device.type == "cuda"
        return DataLoader(self.train_ds, batch_size=self.batch, sampler=sampler, drop_last=True,
                          num_workers=self.cfg.workers, persistent_workers=False, pin_memory=cuda,
                          prefetch_factor=4 if cuda and self.cfg.workers else None)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A batch on the device (uint8 batches, from the CUDA loader, become float in [0, 1] there)."""
        x = x.to(self.device, non_blocking=True)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def validate(self, average: bool = True) -> float:
        """Validation NME of the weights that `best` would save (the average when ema_decay is set),
        or of the raw weights (`average=False`)."""
        with self.ema.applied(self.model) if self.ema and average else contextlib.nullcontext():
            pred, gt = predict_dataset(self.model, self.val_ds, self.device)
        return float(nme(pred, gt).mean())

    def fit(self):
        cfg = self.cfg
        start = time.time()
        before = self.elapsed_s  # time_s continues from the checkpoint's clock after --resume
        net = distributed.wrap(self.model, self.dist, self.device)  # DDP under torchrun, else the model
        while self.epoch < cfg.epochs:
            self.train_ds.set_epoch(self.epoch)
            set_train_mode(self.model, self.cfg.freeze)
            if self.dist.active:  # per-rank, per-epoch stream (node dropout); world 1 keeps today's stream
                torch.manual_seed(cfg.seed * 1000 + self.epoch * 100 + self.dist.rank)
            loader = self.loader()
            steps = len(loader)
            bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", leave=True, dynamic_ncols=True, mininterval=5,
                       disable=not self.dist.is_main)
            running = None
            for i, (x, y, _) in enumerate(bar):
                lr = lr_at(cfg, self.epoch * steps + i, steps)
                for g in self.opt.param_groups:
                    g["lr"] = lr * g.get("scale", 1.0)
                with self.amp.autocast():
                    out = net(self.to_device(x))
                loss, parts = compute_loss(cfg, self.model, self.amp.fp32(out), y.to(self.device, non_blocking=True))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss at epoch {self.epoch + 1} step {i}: {parts}")
                self.opt.zero_grad(set_to_none=True)
                self.amp.backward(loss, self.opt)  # DDP averages the gradients over ranks here
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
                self.amp.step(self.opt)
                if self.ema:
                    self.ema.update(self.model)
                value = float(loss.detach())
                running = value if running is None else 0.9 * running + 0.1 * value
                bar.set_postfix(loss=f"{running:.3f}", lr=f"{lr:.2e}")
            self.epoch += 1
            if self.end_epoch(distributed.all_mean(running, self.dist), lr, start, before):
                break
        return self.best

    def end_epoch(self, running: float, lr: float, start: float, before: float = 0.0) -> bool:
        """Rank 0 validates and saves; every rank gets its figures, so all keep the same history and
        stop together; time_s continues the clock of earlier sessions (`before`). Returns whether to
        stop (time limit)."""
        cfg = self.cfg
        val = raw = float("nan")
        if self.dist.is_main and (self.epoch % cfg.val_every == 0 or self.epoch == cfg.epochs):
            val = self.validate()
            raw = self.validate(average=False) if self.ema else val
        val, raw, elapsed = distributed.broadcast_floats([val, raw, time.time() - start], self.dist)
        improved = val < self.best
        if improved:
            self.best = val
        self.elapsed_s = before + elapsed
        self.history.append({"epoch": self.epoch, "loss": running, "val_nme": val, "lr": lr,
                             "time_s": round(self.elapsed_s, 1), **({"val_nme_raw": raw} if self.ema else {})})
        if self.dist.is_main:
            self.save(best=improved)
            avg = f" (raw weights {raw:.4%})" if self.ema else ""
            tqdm.write(f"epoch {self.epoch}: loss {running:.4f}  val NME {val:.4%}{avg}  best {self.best:.4%}")
        if cfg.time_limit_min and elapsed > cfg.time_limit_min * 60 and self.epoch < cfg.epochs:
            self.log(f"time limit of {cfg.time_limit_min} min reached: stopping; --resume continues", stdout=True)
            return True
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML training config")
    ap.add_argument("--out", required=True, help="run folder (checkpoints, log)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/last.*")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
        out = Path(args.out)
        if not args.resume and (out / "last.safetensors").exists():
            raise CheckpointError(f"{out} already holds a run: pass --resume to continue it or choose another --out")
        ctx = distributed.init_from_env(resolve_device(cfg.device).type)  # world 1 without torchrun
        trainer = Trainer(cfg, out)
        if args.resume:
            trainer.resume()
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=1))
        best = trainer.fit()
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    if ctx.is_main:
        print(json.dumps({"best_val_nme": best, "epochs": trainer.epoch, "out": str(out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
