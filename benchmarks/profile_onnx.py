"""Where an ONNX model's time goes: ONNX Runtime's profiler over repeated single-image runs, kernel time
per operator type and the slowest nodes (docs/FLAGSHIP.md, "Left": the fast tier's speed).

    python benchmarks/profile_onnx.py weights/sdfl_fast.int8.onnx [--threads 1] [--runs 300] [--top 15]

Profiled times carry the profiler's own overhead per node, so compare shares and models profiled in the
same conditions, not absolute figures (`python -m core.bench_speed` times the model without it)."""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile

import numpy as np


def profile(path: str, threads: int = 1, runs: int = 300) -> tuple[dict[str, float], dict[str, float], int]:
    """(microseconds per run by operator type, by node name, number of nodes) for one model."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="ort_profile_"), "run")
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(runs):
        sess.run(None, {inp.name: x})
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    by_op, by_node = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"] / runs
            by_node[e["name"][: -len("_kernel_time")]] += e["dur"] / runs
    return dict(by_op), dict(by_node), len(by_node)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="ONNX files")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--top", type=int, default=15, help="operator types and nodes to list")
    args = ap.parse_args(argv)
    for path in args.models:
        if not os.path.isfile(path):
            print(f"error: {path}: no such file", file=sys.stderr)
            return 2
        by_op, by_node, nodes = profile(path, args.threads, args.runs)
        total = sum(by_op.values())
        print(f"{path}: {total / 1000:.3f} profiled ms per run, {nodes} timed nodes, {args.threads} thread(s)")
        for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"  {op:28s} {us / 1000:7.3f} ms  {us / total:6.1%}")
        print("  slowest nodes:")
        for name, us in sorted(by_node.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"    {name[:70]:70s} {us / 1000:7.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
