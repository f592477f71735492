"""What tests/test_distributed.py runs under torchrun (one copy per rank, gloo on CPU).

    ddp_worker.py train DUMP_DIR [--kill-rank R --kill-epoch E --kill-step S] -- <core.train arguments>
        core.train.main; every rank then writes its weights to DUMP_DIR/rank<r>.safetensors. With
        --kill-rank, rank R SIGKILLs itself at step S of epoch E (0-based), as a crash would.
    ddp_worker.py step CONFIG DUMP_DIR
        one optimiser step on the first global batch of epoch 0; every rank writes its sample indices,
        gradients (after DDP's all-reduce) and weights after the step."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from core import distributed  # noqa: E402
from core import train  # noqa: E402
from core.config import load_config  # noqa: E402

torch.set_num_threads(1)


def dump(path: Path, tensors: dict):
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def run_train(dump_dir: Path, argv: list[str], kill: tuple[int, int, int] | None) -> int:
    fit = train.Trainer.fit

    def fit_then_dump(self):
        best = fit(self)
        dump(dump_dir / f"rank{self.dist.rank}.safetensors", self.model.state_dict())
        return best

    train.Trainer.fit = fit_then_dump
    if kill is not None:
        to_device, calls = train.Trainer.to_device, {}

        def to_device_or_die(self, x):
            n = calls[self.epoch] = calls.get(self.epoch, -1) + 1
            if (self.dist.rank, self.epoch, n) == kill:
                os.kill(os.getpid(), signal.SIGKILL)
            return to_device(self, x)

        train.Trainer.to_device = to_device_or_die
    return train.main(argv)


def run_step(config: str, dump_dir: Path) -> int:
    cfg = load_config(config)
    ctx = distributed.init_from_env("cpu")
    try:
        tr = train.Trainer(cfg, dump_dir / "unused")
        train.set_train_mode(tr.model)
        net = distributed.wrap(tr.model, ctx, tr.device)
        sampler = iter(tr.loader().sampler)
        idx = [next(sampler) for _ in range(tr.batch)]
        x = torch.stack([tr.train_ds[i][0] for i in idx])
        y = torch.stack([tr.train_ds[i][1] for i in idx])
        out = net(x)
        loss, _ = train.compute_loss(cfg, tr.model, out, y)
        tr.opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = {f"grad.{k}": p.grad for k, p in tr.model.named_parameters() if p.grad is not None}
        tr.opt.step()
        dump(dump_dir / f"rank{ctx.rank}.safetensors",
             {"indices": torch.tensor(idx), "loss": loss, "coords": out["coords"], **grads, **tr.model.state_dict()})
    finally:
        distributed.shutdown()
    return 0


def main(argv: list[str]) -> int:
    mode, rest = argv[0], argv[1:]
    if mode == "step":
        return run_step(rest[0], Path(rest[1]))
    sep = rest.index("--")
    opts, train_argv = rest[:sep], rest[sep + 1:]
    kill = None
    if "--kill-rank" in opts:
        kill = tuple(int(opts[opts.index(f"--kill-{k}") + 1]) for k in ("rank", "epoch", "step"))
    return run_train(Path(opts[0]), train_argv, kill)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
