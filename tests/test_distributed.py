"""Data-parallel training: 2 processes under torchrun (gloo on CPU, 127.0.0.1 only) over synthetic
faces. Gradients are averaged (= the gradient of one process on the whole global batch), ranks hold
identical weights, a 2-process run follows the 1-process run with the same global batch, and
--resume after a rank is killed reproduces the uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch.utils.data import WeightedRandomSampler

from core import distributed, train
from core.checkpoint import read_meta
from core.config import ConfigError, load_config
from synth_faces import write_split
from train_runs import AUG, cfg_dict

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "ddp_worker.py"
LAUNCH_TIMEOUT_S = 300  # one torchrun launch (2 tiny processes); a hang fails the test instead of the suite


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node=nproc tests/ddp_worker.py ARGS` on 127.0.0.1, killed (its whole
    process group) if it outlives LAUNCH_TIMEOUT_S."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "--max_restarts=0", str(WORKER), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {LAUNCH_TIMEOUT_S} s:\n{out[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Synthetic faces (9 train + 3 validation) and a 2-epoch config: global batch 4 = 2 per rank,
    so 2 optimiser steps per epoch, every augmentation on."""
    tmp = tmp_path_factory.mktemp("ddp")
    write_split(tmp / "data", n=12, max_angle=25, seed=0)
    cfg = tmp / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(cfg_dict(tmp / "data", epochs=2, lr=3e-4, augment=AUG)))
    return tmp, str(cfg)


def _trainable(cfg_path: str) -> list[str]:
    tr = train.Trainer(load_config(cfg_path), Path("unused"))
    train.set_train_mode(tr.model)
    return [k for k, p in tr.model.named_parameters() if p.requires_grad]


def _rel(a: dict, b: dict, keys) -> float:
    """||a - b|| / ||b|| over the tensors `keys` taken together."""
    num = sum(float((a[k].double() - b[k].double()).norm() ** 2) for k in keys)
    den = sum(float(b[k].double().norm() ** 2) for k in keys)
    return (num / den) ** 0.5


# ---------------------------------------------------------------- no processes needed
def test_sampler_matches_weighted_random_sampler_and_shards_global_batches():
    w = np.random.default_rng(0).uniform(0.5, 2.0, 23)
    g = torch.Generator().manual_seed(7 * 1000 + 3)
    want = list(WeightedRandomSampler(w, 23, replacement=True, generator=g))
    one = distributed.ShardedWeightedSampler(w, 23, 4, seed=7)
    one.set_epoch(3)
    assert list(one) == want and len(one) == 23  # world 1: today's draw, index for index
    shards = []
    for r in range(2):
        s = distributed.ShardedWeightedSampler(w, 23, 2, seed=7, rank=r, world=2)
        s.set_epoch(3)
        shards.append(list(s))
        assert len(s) == len(shards[-1]) == (23 // 4) * 2
    # global batch k (4 indices of the same draw) = rank 0's 2 then rank 1's 2
    rebuilt = [i for k in range(23 // 4) for r in range(2) for i in shards[r][2 * k:2 * k + 2]]
    assert rebuilt == want[: (23 // 4) * 4]
    other = distributed.ShardedWeightedSampler(w, 23, 2, seed=7, rank=0, world=2)
    other.set_epoch(4)
    assert list(other) != shards[0]  # a new order every epoch


def test_global_batch_must_split_evenly():
    assert distributed.per_rank_batch(32, distributed.DistContext(0, 4, 0)) == 8
    with pytest.raises(ConfigError, match="multiple of the 3 processes"):
        distributed.per_rank_batch(32, distributed.DistContext(0, 3, 0))


def test_mixed_precision_needs_cuda(setup, tmp_path, capsys):
    _, cfg = setup
    assert train.main(["--config", cfg, "--out", str(tmp_path / "run"), "--set", "precision=bf16"]) == 2
    assert "precision 'bf16' is for CUDA" in capsys.readouterr().err


# ---------------------------------------------------------------- 2 processes
def test_gradients_are_averaged_over_ranks(setup, tmp_path):
    """One DDP step: each rank's gradient equals one process's gradient on the whole global batch
    (synchronised BatchNorm included), and both ranks hold the same weights afterwards."""
    _, cfg = setup
    res = torchrun("step", cfg, str(tmp_path))
    assert res.returncode == 0, res.stdout[-4000:]
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]

    tr = train.Trainer(load_config(cfg), tmp_path / "unused")  # world size 1
    train.set_train_mode(tr.model)
    idx = list(tr.loader().sampler)[: 4]
    assert ranks[0]["indices"].tolist() + ranks[1]["indices"].tolist() == idx  # the global batch, split
    x = torch.stack([tr.train_ds[i][0] for i in idx])
    y = torch.stack([tr.train_ds[i][1] for i in idx])
    loss, _ = train.compute_loss(tr.cfg, tr.model, tr.model(x), y)
    loss.backward()
    grads = {f"grad.{k}": p.grad for k, p in tr.model.named_parameters() if p.grad is not None}
    assert set(grads) == {k for k in ranks[0] if k.startswith("grad.")}
    for r in ranks:
        assert _rel(r, grads, grads) < 1e-4  # averaged, not summed (that would be 1.0 off)
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0] if k not in ("indices", "loss", "coords"))
    assert float(ranks[0]["loss"] + ranks[1]["loss"]) / 2 == pytest.approx(float(loss.detach()), rel=1e-5)


@pytest.fixture(scope="module")
def two_process_run(setup):
    tmp, cfg = setup
    res = torchrun("train", str(tmp), "--", "--config", cfg, "--out", str(tmp / "run2"))
    assert res.returncode == 0, res.stdout[-4000:]
    return tmp / "run2", res.stdout


def test_two_processes_match_one_process(setup, two_process_run, tmp_path):
    tmp, cfg = setup
    run2, log = two_process_run
    assert log.count('"best_val_nme"') == 1 and log.count("epoch 2: loss") == 1  # rank 0 alone reports
    r0, r1 = (load_file(str(tmp / f"rank{r}.safetensors")) for r in range(2))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # both ranks end with the same weights

    assert train.main(["--config", cfg, "--out", str(tmp_path / "run1")]) == 0
    one, two = load_file(str(tmp_path / "run1" / "last.safetensors")), load_file(str(run2 / "last.safetensors"))
    assert set(one) == set(two)
    init = train.Trainer(load_config(cfg), tmp_path / "unused").model.state_dict()
    keys = _trainable(cfg)
    update = {k: one[k] - init[k] for k in keys}
    # Float rounding differs (all-reduce, BatchNorm sums); Adam flips the sign of the step of the few
    # weights whose gradient is ~0, so weights agree to a share of the update: ~0.15 here, and two
    # 1-process runs with 1 vs 2 threads differ by ~0.14 (summation order alone). A rank training on
    # the wrong samples, or unsynchronised BatchNorm, moves the weights by the whole update.
    assert _rel({k: two[k] - init[k] for k in keys}, update, keys) < 0.35
    stats = [k for k in one if k.endswith(("running_mean", "running_var"))]
    assert _rel(two, one, stats) < 0.02
    h1, h2 = read_meta(tmp_path / "run1" / "last")["history"], read_meta(run2 / "last")["history"]
    assert [h["epoch"] for h in h2] == [1, 2]
    assert [h["val_nme"] for h in h2] == pytest.approx([h["val_nme"] for h in h1], abs=2e-3)
    assert [h["loss"] for h in h2] == pytest.approx([h["loss"] for h in h1], rel=0.02)
    assert read_meta(run2 / "last")["n_train"] == 9


def test_resume_after_a_rank_is_killed(setup, two_process_run, tmp_path):
    """Rank 1 is SIGKILLed at step 1 of epoch 2: torchrun fails, the epoch-1 checkpoint survives and
    --resume (2 processes again) ends with the uninterrupted run's weights and optimiser state."""
    tmp, cfg = setup
    run2, _ = two_process_run
    out = tmp_path / "run"
    res = torchrun("train", str(tmp_path), "--kill-rank", "1", "--kill-epoch", "1", "--kill-step", "1", "--",
                   "--config", cfg, "--out", str(out))
    assert res.returncode != 0
    assert read_meta(out / "last")["epoch"] == 1
    res = torchrun("train", str(tmp_path), "--", "--config", cfg, "--out", str(out), "--resume")
    assert res.returncode == 0, res.stdout[-4000:]
    summary = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith('{"best_val_nme"')]
    assert "resumed from" in res.stdout and len(summary) == 1 and summary[0]["epochs"] == 2
    a, b = load_file(str(run2 / "last.safetensors")), load_file(str(out / "last.safetensors"))
    assert any(k.startswith("train.opt.") for k in a)
    assert max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel()) <= 1e-6
    ha, hb = read_meta(run2 / "last")["history"], read_meta(out / "last")["history"]
    assert [h["val_nme"] for h in hb] == pytest.approx([h["val_nme"] for h in ha], abs=1e-7)
