"""Data-parallel training helpers for core.train: the process group that torchrun describes (gloo
on CPU, nccl on CUDA), a sharded weighted sampler, synchronised BatchNorm, the DDP wrap, and
mixed precision. A plain `python -m core.train` (no torchrun) gets world size 1, where every
helper here is a no-op and training is bit-identical to a run without this module.

Global batch: `batch_size` in the config is the batch of one optimiser step over all processes;
each of the W processes takes batch_size / W of it. Gradients are averaged by DDP, so with
synchronised BatchNorm a step on W processes equals (up to float rounding) a step of one
process on the whole batch."""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from .config import ConfigError

TIMEOUT_MIN = 30  # a collective waits this long for the other ranks (rank 0 validates meanwhile)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and the progress bar."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


_CONTEXT = DistContext()


def current() -> DistContext:
    return _CONTEXT


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError as e:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from e


def init_from_env(device_type: str) -> DistContext:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT);
    world size 1 (a plain run) initialises nothing. Backend: nccl for CUDA, gloo for CPU."""
    global _CONTEXT
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        _CONTEXT = DistContext()
        return _CONTEXT
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"local rank {local_rank} but only {torch.cuda.device_count()} CUDA device(s): "
                              "--nproc_per_node must not exceed the GPUs of a node")
        torch.cuda.set_device(local_rank)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=TIMEOUT_MIN))
    _CONTEXT = DistContext(rank, world, local_rank)
    return _CONTEXT


def shutdown():
    global _CONTEXT
    if dist.is_initialized():
        dist.destroy_process_group()
    _CONTEXT = DistContext()


def rank_device(device: torch.device, ctx: DistContext) -> torch.device:
    """Under torchrun each process drives the GPU of its local rank."""
    if ctx.active and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def per_rank_batch(batch_size: int, ctx: DistContext) -> int:
    if batch_size % ctx.world:
        raise ConfigError(f"batch_size {batch_size} (the global batch) must be a multiple of the "
                          f"{ctx.world} processes")
    return batch_size // ctx.world


# ---------------------------------------------------------------- sampling
class ShardedWeightedSampler(Sampler[int]):
    """Weighted sampling with replacement, sharded by global batch. Epoch e draws one global
    sequence of `num_samples` indices, multinomial(weights) with a generator seeded seed*1000 + e
    (the draw torch's WeightedRandomSampler makes), identical on every rank; global batch k is
    seq[k*B : (k+1)*B] with B = batch * world, and rank r takes its r-th slice of `batch`. One
    rank (world 1) yields the whole sequence, as WeightedRandomSampler did."""

    def __init__(self, weights, num_samples: int, batch: int, seed: int, rank: int = 0, world: int = 1):
        self.weights = torch.as_tensor(np.asarray(weights), dtype=torch.double)
        self.num_samples, self.batch, self.seed, self.rank, self.world = num_samples, batch, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def global_sequence(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return torch.multinomial(self.weights, self.num_samples, True, generator=g)

    def __len__(self) -> int:
        if self.world == 1:
            return self.num_samples
        return (self.num_samples // (self.batch * self.world)) * self.batch

    def __iter__(self):
        seq = self.global_sequence()
        if self.world > 1:
            steps = self.num_samples // (self.batch * self.world)
            seq = seq[: steps * self.batch * self.world].view(steps, self.world, self.batch)[:, self.rank].reshape(-1)
        yield from iter(seq.tolist())


# ---------------------------------------------------------------- BatchNorm
class _AllReduceSum(torch.autograd.Function):
    """y = sum over ranks of x; the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics span every rank's batch (for gloo / CPU, which torch's
    SyncBatchNorm does not serve): mean = sum_r sum(x_r) / N, var = sum_r sum((x_r - mean)^2) / N
    over N values per channel, through autograd-aware all_reduce, so the backward pass is the
    one of BatchNorm over the global batch. Eval mode (and the frozen stem) use running stats."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x):
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        n = x.numel() // x.shape[1] * dist.get_world_size()  # equal batches on every rank (drop_last)
        mean = _AllReduceSum.apply(x.sum(dims)) / n
        d = x - mean.view(shape)
        var = _AllReduceSum.apply((d * d).sum(dims)) / n
        y = d * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / max(n - 1, 1), alpha=m)
        return y


def _to_global_bn(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _to_global_bn(child))
    return out


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm layer computes its batch statistics over all ranks: torch's SyncBatchNorm on
    CUDA, GlobalBatchNorm on CPU. Parameters and buffers are kept (same names, same tensors)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _to_global_bn(model)


# ---------------------------------------------------------------- DDP and collectives
def wrap(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `model` (gradients averaged over ranks; rank 0's weights are
    broadcast at construction), or `model` itself for world size 1. Parameters a head leaves
    unused are tolerated (find_unused_parameters); BatchNorm buffers agree once BN is synchronised."""
    if not ctx.active:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=True, broadcast_buffers=False)


def all_mean(value: float, ctx: DistContext) -> float:
    """The mean of a float over ranks (the value itself for world size 1)."""
    if not ctx.active or value is None:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return float(t.item()) / ctx.world


def broadcast_floats(values: list[float], ctx: DistContext) -> list[float]:
    """Rank 0's values on every rank (they wait here while rank 0 validates and saves)."""
    if not ctx.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.broadcast(t, 0)
    return t.tolist()


def same_on_all_ranks(value: float, what: str, ctx: DistContext):
    """Raise on a rank whose `value` differs from rank 0's (e.g. the epoch a resumed run starts at)."""
    mine = broadcast_floats([float(value)], ctx)[0]
    if mine != float(value):
        raise ConfigError(f"rank {ctx.rank}: {what} is {value} but {mine} on rank 0")


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


# ---------------------------------------------------------------- mixed precision
class MixedPrecision:
    """precision "fp32": no-op. "bf16": autocast to bfloat16 (no scaler: bf16 has fp32's range).
    "fp16": autocast to float16 with a GradScaler (loss scaled up, gradients unscaled before
    clipping, steps with inf/NaN gradients skipped). CUDA only."""

    def __init__(self, precision: str, device: torch.device):
        if precision != "fp32" and device.type != "cuda":
            raise ConfigError(f"precision {precision!r} is for CUDA; on {device.type} use precision: fp32")
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.device = device
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @staticmethod
    def fp32(out: dict) -> dict:
        """Model outputs as float32, so the loss is computed in full precision (no-op for fp32)."""
        def cast(v):
            if isinstance(v, (list, tuple)):  # e.g. a hybrid head's stage_coords
                return [cast(x) for x in v]
            return v.float() if torch.is_tensor(v) and v.is_floating_point() else v

        return {k: cast(v) for k, v in out.items()}

    def backward(self, loss: torch.Tensor, opt: torch.optim.Optimizer):
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(opt)  # clip_grad_norm_ then sees the true gradients

    def step(self, opt: torch.optim.Optimizer):
        if self.scaler is None:
            opt.step()
        else:
            self.scaler.step(opt)
            self.scaler.update()
