"""Training throughput (images/s) of core.train for 1 and N processes (torchrun, gloo on CPU / nccl
on CUDA) with the same global batch, the scaling efficiency, and the time of one flagship run.

    nice -n 10 python benchmarks/train_throughput.py --procs 1 2 [--config configs/sdfl_graph.yaml]
        [--limit 128] [--device cpu] [--set precision=bf16] [--json benchmarks/results/train_throughput_cpu.json]

Each run trains --limit faces for 3 epochs with validation only after the last; images/s is the
second epoch's (steady state: no start-up, no validation). Efficiency = (images/s with N) / (N x images/s
with 1). Flagship estimate: 50 epochs of the full train split (90 % after the validation hold-out)
at the measured rate, plus one validation pass per epoch timed from the third epoch."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import load_config  # noqa: E402
from core.data import train_val_split  # noqa: E402

EPOCHS = 3
FLAGSHIP_EPOCHS = 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(nproc: int, args, work: Path) -> dict:
    out = work / f"p{nproc}"
    sets = [f"data.root={args.data}", f"data.limit={args.limit}", f"epochs={EPOCHS}", "val_every=1000",
            "warmup_epochs=1", f"device={args.device}", f"threads={args.threads}"]
    sets += ([f"workers={args.workers}"] if args.workers is not None else []) + args.set
    train = ["-m", "core.train", "--config", args.config, "--out", str(out)] + [a for s in sets for a in ("--set", s)]
    if nproc == 1:
        cmd = [sys.executable] + train
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}"] + train
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "GLOO_SOCKET_IFNAME": "lo"}
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout_min * 60)
    wall = time.time() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    meta = json.loads((out / "last.json").read_text())
    cfg = meta["train_config"]
    t = [h["time_s"] for h in meta["history"]]
    steps = meta["n_train"] // cfg["batch_size"]
    images = steps * cfg["batch_size"]
    epoch2 = t[1] - t[0]
    return {"processes": nproc, "threads_per_process": args.threads, "device": args.device,
            "precision": cfg["precision"], "batch_size_global": cfg["batch_size"],
            "input_size": cfg["model"]["input_size"], "n_train": meta["n_train"], "n_val": meta["n_val"],
            "steps_per_epoch": steps, "epoch2_s": round(epoch2, 2), "images_per_s": round(images / epoch2, 2),
            "val_s": round(max(t[2] - t[1] - epoch2, 0.0), 2), "wall_s": round(wall, 1),
            "load_average_after": os.getloadavg()[0], "command": " ".join(cmd[1:])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "sdfl_graph.yaml"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces68"))
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--limit", type=int, default=128, help="training faces per epoch of the measurement")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--workers", type=int, default=None, help="data-loading processes per process (default: the config's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--timeout-min", type=float, default=20)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, [f"data.root={args.data}"] + args.set)
    n_full = len(train_val_split(cfg.data)[0])
    val_full = len(train_val_split(cfg.data)[1])
    work = Path(tempfile.mkdtemp(prefix="throughput_"))
    try:
        rows = [measure(n, args, work) for n in args.procs]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = rows[0]["images_per_s"] / rows[0]["processes"]
    for r in rows:
        r["scaling_efficiency"] = round(r["images_per_s"] / (r["processes"] * base), 3)
        images = (n_full // r["batch_size_global"]) * r["batch_size_global"] * FLAGSHIP_EPOCHS
        val_per_epoch = r["val_s"] * val_full / max(r["n_val"], 1)
        r["flagship_estimate_h"] = round((images / r["images_per_s"] + FLAGSHIP_EPOCHS * val_per_epoch) / 3600, 2)
    res = {"config": args.config, "flagship": f"{n_full} training faces (train minus validation), {FLAGSHIP_EPOCHS} "
           f"epochs, {val_full} validation faces per epoch", "cpu_count": os.cpu_count(), "rows": rows}
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
