"""Exponential moving average of a model's weights (training option `ema_decay`).

After every optimiser step, theta_ema <- d * theta_ema + (1 - d) * theta for every floating-point
tensor of the model's state (parameters and BatchNorm running statistics); integer buffers are
copied. With d = 0.995 the average spans about 1 / (1 - d) = 200 steps. Validation scores the
average and `best.*` holds it; `last.*` keeps the raw weights for the optimiser and the average
beside them (`train.ema.*`), so `--resume` continues both.

    python -m core.ema runs/x/last.safetensors --out runs/x/average   # the average of a run's last epoch
    python -m core.ema --soup A.safetensors B.safetensors --out soup    # uniform average of model checkpoints
    python -m core.ema --soup S.safetensors A.safetensors --coefficients 2 -1 --out B  # B from S = (A + B) / 2

A soup, theta = (1/K) sum_k theta_k over K checkpoints of one architecture fine-tuned from the same
start, keeps what each run learned where their losses agree (the shipped flagship: docs/FLAGSHIP.md).
`--coefficients c_1 .. c_K` (summing to 1) gives theta = sum_k c_k theta_k instead: a weighted soup, or
with a negative one an ingredient recovered from a soup and the others."""
from __future__ import annotations

import argparse
import contextlib
import sys

import torch

EMA_PREFIX = "ema."
# metadata that describes the stored tensors, not the run: save_weights writes it anew
TENSOR_META = ("optimizer", "save_id", "tensors_sha256", "format", "model", "num_landmarks", "input_size", "neighbours")


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module):
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.lerp_(v.detach().to(s.dtype), 1.0 - self.decay)
            else:
                s.copy_(v)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """Inside the block the model holds the averaged weights; the raw ones come back after it."""
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.load_state_dict(raw)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}{EMA_PREFIX}{k}": v.detach().cpu() for k, v in self.shadow.items()}

    def load(self, tensors: dict[str, torch.Tensor], prefix: str) -> bool:
        """Restore the average from a checkpoint's tensors; False when it holds none (or another model's)."""
        found = stored_average(tensors, prefix)
        if set(found) != set(self.shadow):
            return False
        with torch.no_grad():
            for k, v in found.items():
                self.shadow[k].copy_(v.to(self.shadow[k].dtype))
        return True


def stored_average(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The averaged model state saved among a checkpoint's tensors (empty when there is none)."""
    key = f"{prefix}{EMA_PREFIX}"
    return {k[len(key):]: v for k, v in tensors.items() if k.startswith(key)}


def save_average(path, out) -> int:
    """Write the weight average stored in training checkpoint `path` as a model checkpoint `out`
    (its metadata says which epoch it averages up to); returns that epoch."""
    from .checkpoint import (TRAIN_STATE_PREFIX, CheckpointError, load_model, load_state_strict, load_tensors,
                             save_weights)

    model, meta = load_model(path)
    average = stored_average(load_tensors(path), TRAIN_STATE_PREFIX)
    if not average:
        raise CheckpointError(f"{path}: holds no weight average (a run without ema_decay, or best.*, "
                              "which already is one)")
    load_state_strict(model, average, str(path))
    keep = {k: v for k, v in meta.items() if k not in TENSOR_META}
    save_weights(out, model, {**keep, "weights": f"weight average of {path} (epoch {meta.get('epoch')})"})
    return int(meta.get("epoch", 0))


def save_soup(paths, out, coefficients=None) -> None:
    """Write the average of model checkpoints `paths` (one architecture) as `out`, uniform or with
    `coefficients` (one per checkpoint, summing to 1); integer buffers come from the first. The metadata
    is the first's, with the list of ingredients."""
    from .checkpoint import CheckpointError, load_model, save_weights

    if len(paths) < 2:
        raise CheckpointError("a soup needs at least two checkpoints")
    coef = [1.0 / len(paths)] * len(paths) if coefficients is None else [float(c) for c in coefficients]
    if len(coef) != len(paths) or abs(sum(coef) - 1.0) > 1e-6:
        raise CheckpointError(f"--coefficients needs one value per checkpoint ({len(paths)}) summing to 1, got {coef}")
    models = [load_model(p) for p in paths]
    model, meta = models[0]
    states = [m.state_dict() for m, _ in models]
    for p, (m, _), state in zip(paths[1:], models[1:], states[1:]):
        if m.cfg != model.cfg or set(state) != set(states[0]):
            raise CheckpointError(f"{p}: another architecture than {paths[0]}; a soup averages one model's weights")
    def mix(k):  # float32 mean when uniform (the shipped soups), float64 sum when weighted
        if coefficients is None:
            return torch.stack([s[k].float() for s in states]).mean(0)
        return sum(c * s[k].double() for c, s in zip(coef, states))

    soup = {k: (mix(k).to(v.dtype) if v.is_floating_point() else v) for k, v in states[0].items()}
    model.load_state_dict(soup)
    per_run = ("history", "epoch", "best_val_nme", "elapsed_s", "weights")  # said per ingredient below
    keep = {k: v for k, v in meta.items() if k not in (*TENSOR_META, *per_run)}
    ingredients = [{"checkpoint": str(p), "coefficient": c, "epoch": m.get("epoch"),
                    "weights": m.get("weights", "as trained"),
                    "val_nme": (m.get("history") or [{}])[-1].get("val_nme", m.get("best_val_nme")),
                    "train_config": m.get("train_config")}
                   for p, c, (_, m) in zip(paths, coef, models)]
    kind = "uniform" if coefficients is None else "weighted"
    save_weights(out, model, {**keep, "weights": f"{kind} soup of {len(paths)} checkpoints", "soup": ingredients})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", help="a run's last.safetensors (trained with ema_decay)")
    ap.add_argument("--soup", nargs="+", metavar="CHECKPOINT", help="instead: average these model checkpoints")
    ap.add_argument("--coefficients", nargs="+", type=float, metavar="C",
                    help="with --soup: one weight per checkpoint, summing to 1 (default: uniform)")
    ap.add_argument("--out", required=True, help="stem of the model checkpoint to write")
    args = ap.parse_args(argv)
    if bool(args.checkpoint) == bool(args.soup):
        ap.error("give either a training checkpoint or --soup CHECKPOINT ...")
    if args.coefficients and not args.soup:
        ap.error("--coefficients weighs the checkpoints of --soup")
    from .checkpoint import CheckpointError

    try:
        if args.soup:
            save_soup(args.soup, args.out, args.coefficients)
            kind = "weighted" if args.coefficients else "uniform"
            print(f"{args.out}: the {kind} soup of {len(args.soup)} checkpoints")
            return 0
        epoch = save_average(args.checkpoint, args.out)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: the weight average after epoch {epoch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
