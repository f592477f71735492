"""Exponential moving average of a model's weights (training option `ema_decay`).

After every optimiser step, theta_ema <- d * theta_ema + (1 - d) * theta for every floating-point
tensor of the model's state (parameters and BatchNorm running statistics); integer buffers are
copied. With d = 0.995 the average spans about 1 / (1 - d) = 200 steps. Validation scores the
average and `best.*` holds it; `last.*` keeps the raw weights for the optimiser and the average
beside them (`train.ema.*`), so `--resume` continues both."""
from __future__ import annotations

import contextlib

import torch

EMA_PREFIX = "ema."


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
        """Restore the average from a checkpoint's tensors; False when it holds none."""
        key = f"{prefix}{EMA_PREFIX}"
        found = {k[len(key):]: v for k, v in tensors.items() if k.startswith(key)}
        if set(found) != set(self.shadow):
            return False
        with torch.no_grad():
            for k, v in found.items():
                self.shadow[k].copy_(v.to(self.shadow[k].dtype))
        return True
