"""What the shape prior costs per face (core.shape_prior): the numpy fit (what FaceAligner runs; batch 1
and 8) and its port in the page (app/static/browser_webcam/shape_prior.js) in headless Chromium, on the
shipped flagship's outputs for validation faces under the occlusion protocol (so the fit has work to do).

    python benchmarks/shape_prior_speed.py [--data ../shared/data/faces68] [--runs 500] [--no-browser]

Prints medians in ms per face. Timing only: accuracy is benchmarks/robust_val.py's and accuracy.py's."""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from core.bench_speed import timed  # noqa: E402
from core.checkpoint import FLAGSHIP_WEIGHTS, load_model, training_data_config  # noqa: E402

JS_LOOP = """async ([spec, faces, runs]) => {
  const { ShapePrior } = await import(new URL("static/shape_prior.js", location.href).href);
  const prior = new ShapePrior(spec);
  const data = faces.map(([p, c]) => [Float64Array.from(p), Float64Array.from(c)]);
  const ms = [];
  for (let r = 0; r < runs + 20; r++) {
    const [p, c] = data[r % data.length], t = performance.now();
    prior.refine(p, c);
    if (r >= 20) ms.push(performance.now() - t);
  }
  return ms;
}"""


def faces(data: str, n: int = 32):
    """(coords, cov) of the flagship on n validation faces, occlusion protocol seed 0, crop units."""
    import torch

    from core.data import train_val_split
    from core.evaluate import protocol_batches

    model, meta = load_model(FLAGSHIP_WEIGHTS)
    _, val = train_val_split(training_data_config(meta), data)
    with torch.inference_mode():
        out, _ = next(protocol_batches(model, val[:n], occlusion=0, batch_size=n))
    return out["coords"].numpy().astype(np.float64), out["cov"].numpy().astype(np.float64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "faces68"))
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args(argv)
    from core.shape_prior import prior_for
    from core.checkpoint import read_meta

    prior = prior_for(FLAGSHIP_WEIGHTS, read_meta(FLAGSHIP_WEIGHTS))
    coords, cov = faces(args.data)
    it = iter(range(10 ** 9))
    for batch in (1, 8):
        def one(batch=batch):
            k = next(it) % (len(coords) - batch + 1)
            prior.refine(coords[k:k + batch], cov[k:k + batch])
        print(f"numpy (core.shape_prior), batch {batch}: {statistics.median(timed(one, args.runs)) / batch:.3f} ms "
              "per face")
    if args.no_browser:
        return 0
    from browser_env import CHROMIUM, CHROMIUM_ARGS
    from browser_webcam_fps import serve
    from playwright.sync_api import sync_playwright

    from app import browser_webcam as bw

    url, srv = serve(bw.BrowserWebcam(models=[]))
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = b.new_page()
            page.goto(url, wait_until="domcontentloaded")
            spec = {"mean": prior.mean.ravel().tolist(), "modes": prior.modes.ravel().tolist(),
                    "variances": prior.variances.tolist()}
            ms = page.evaluate(JS_LOOP, [spec, [[c.ravel().tolist(), v.ravel().tolist()] for c, v in zip(coords, cov)],
                                         args.runs])
            print(f"shape_prior.js in headless Chromium: {statistics.median(ms):.3f} ms per face")
            b.close()
    finally:
        srv.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
