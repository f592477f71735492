"""Occlusion tab latency per slider move: LandmarkApp.run_occlusion on the astronaut with the shipped
models, the clean predictions cached (as when a user drags a slider), median of --runs.

    python benchmarks/occlusion_latency.py [--no-shape-prior] [--runs 8]"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.state import ASTRONAUT  # noqa: E402
from app.ui import LandmarkApp, load_models  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--no-shape-prior", action="store_true")
    args = ap.parse_args(argv)
    prior = not args.no_shape_prior
    app = LandmarkApp(load_models(), results_dir=tempfile.mkdtemp())
    state, times = None, []
    for i in range(args.runs + 1):  # the first call also predicts the clean photo: not timed
        t0 = time.perf_counter()
        state = app.run_occlusion(str(ASTRONAUT), "box", 0.45 + 0.01 * i, 0.7, 0.6, 0.3, 0, 3, "gray", state, None,
                                  prior)[-1]
        times.append(time.perf_counter() - t0)
    print(f"occlusion tab, shape prior {'on' if prior else 'off'}: median {1000 * np.median(times[1:]):.1f} ms "
          f"per slider move ({args.runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
