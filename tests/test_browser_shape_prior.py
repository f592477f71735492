"""The in-browser webcam's port of the shape prior (app/static/browser_webcam/shape_prior.js) against
core.shape_prior.ShapePrior.refine, in headless Chromium on a bare page of the webcam server. (The
page's whole pipeline with a prior named in the model's JSON: tests/test_browser_webcam.py.)"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from browser_env import CHROMIUM, CHROMIUM_ARGS, NO_CHROMIUM, chromium_found

from conftest import synthetic_shapes
from core.shape_prior import ShapePrior

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # browser_webcam_fps.serve

if not chromium_found():
    pytest.skip(NO_CHROMIUM, allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="needs Playwright (pip install playwright)")

REFINE = """async ([spec, faces]) => {
  const { ShapePrior } = await import(new URL("static/shape_prior.js", location.href).href);
  const prior = new ShapePrior(spec);
  return faces.map(([p, c]) => Array.from(prior.refine(Float64Array.from(p), Float64Array.from(c))));
}"""


@pytest.fixture(scope="module")
def page():
    from browser_webcam_fps import serve
    from playwright.sync_api import sync_playwright

    from app import browser_webcam as bw

    url, srv = serve(bw.BrowserWebcam(models=[]))
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pg = b.new_page()
            pg.goto(url, wait_until="domcontentloaded")
            yield pg
        finally:
            b.close()
            srv.should_exit = True


def test_page_shape_prior_is_pythons(page):
    """Noisy faces in image pixels with one uncertain, displaced point each, and a face with a
    non-finite covariance (left as it is): the page's fit within 1e-6 px of Python's."""
    prior = ShapePrior.fit(synthetic_shapes(64))
    rng = np.random.default_rng(4)
    pts = synthetic_shapes(3, seed=9).astype(np.float64) * 300 + 50 + rng.normal(0, 2, (3, 68, 2))
    a = rng.normal(0, 1.5, (3, 68, 2, 2))
    cov = np.einsum("bnij,bnkj->bnik", a, a) + np.eye(2)
    pts[:, 10] += 25
    cov[:, 10] *= 100
    cov[2, 3, 0, 0] = np.nan
    want = prior.refine(pts, cov)
    spec = {"mean": prior.mean.ravel().tolist(), "modes": prior.modes.ravel().tolist(),
            "variances": prior.variances.tolist()}
    got = page.evaluate(REFINE, [spec, [[p.ravel().tolist(), c.ravel().tolist()] for p, c in zip(pts, cov)]])
    got = np.asarray(got).reshape(3, 68, 2)
    assert np.abs(got - want).max() < 1e-6 and np.array_equal(got[2], pts[2])
    assert np.abs(want[:2, 10] - pts[:2, 10]).max() > 5  # the uncertain point moved
    # a model's point offsets (core.calibrate) move the result last, in each face's frame
    o = rng.normal(0, 0.03, (68, 2))
    want = ShapePrior(prior.mean, prior.modes, prior.variances, offsets=o).refine(pts, cov)
    spec["offsets"] = o.ravel().tolist()
    got = page.evaluate(REFINE, [spec, [[p.ravel().tolist(), c.ravel().tolist()] for p, c in zip(pts, cov)]])
    got = np.asarray(got).reshape(3, 68, 2)
    assert np.abs(got - want).max() < 1e-6 and np.array_equal(got[2], pts[2])
    assert np.abs(want[:2] - prior.refine(pts, cov)[:2]).max() > 1  # the offsets moved the points
