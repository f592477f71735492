"""Numbers of the occlusion tab (pure numpy, no Gradio): error against ground truth when the user
gives it, movement from the model's own clean prediction otherwise (labelled as such: movement is
not error), the growth of the error ellipses on covered and visible points, and the one-line
reading of a result."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.overlays import landmark_sigmas

from .io import interocular

MATCH_DISTANCE = 0.5  # a ground-truth face belongs to a detected one within half its box size


def match_truth(truth: np.ndarray | None, faces: list[dict]) -> list[np.ndarray | None]:
    """For each predicted face, the ground-truth face (F, 68, 2) whose centre is nearest to the
    face box's centre, if closer than MATCH_DISTANCE x the box's larger side; else None."""
    if truth is None or not len(truth):
        return [None] * len(faces)
    centres = truth.mean(1)
    out = []
    for f in faces:
        x0, y0, x1, y1 = f["box"]
        d = np.linalg.norm(centres - [(x0 + x1) / 2, (y0 + y1) / 2], axis=1)
        k = int(np.argmin(d))
        out.append(truth[k] if d[k] < MATCH_DISTANCE * max(x1 - x0, y1 - y0) else None)
    return out


def ellipse_size(cov: np.ndarray | None) -> np.ndarray | None:
    """(68,) size of each 1-sigma ellipse: sqrt(major x minor semi-axis), px."""
    sig = landmark_sigmas(cov) if cov is not None else None
    return None if sig is None else np.sqrt(sig[:, 0] * sig[:, 1])


def ellipse_growth(clean_cov, occluded_cov, covered: np.ndarray) -> tuple[float, float]:
    """Mean ellipse size under occlusion / without, on the covered points and on the visible ones
    (nan where there are none or no covariance)."""
    a, b = ellipse_size(clean_cov), ellipse_size(occluded_cov)
    if a is None or b is None:
        return float("nan"), float("nan")
    ratio = lambda m: float(b[m].mean() / max(a[m].mean(), 1e-9)) if m.any() else float("nan")  # noqa: E731
    return ratio(covered), ratio(~covered)


@dataclass
class ModelResult:
    """One model on one occluded photo (first face with ground truth, else face #0)."""

    name: str
    per_landmark: np.ndarray  # (68,) px: error against truth, or movement from the clean prediction
    clean_nme: float | None  # % of the truth's IOD; None without ground truth
    occluded_nme: float | None
    movement_px: float  # mean movement from the clean prediction (all faces)
    movement_iod: float  # the same, % of the clean prediction's IOD
    growth_covered: float
    growth_visible: float
    covered: int  # points under the occluder


def model_result(name: str, clean: list[dict], occluded: list[dict], truths: list, covered: list[np.ndarray],
                 px: float) -> ModelResult:
    """Scores of one model; px = file pixels per working pixel (reports are in file pixels)."""
    moves = [np.linalg.norm(o["landmarks"] - c["landmarks"], axis=1) for c, o in zip(clean, occluded)]
    iods = [interocular(c["landmarks"]) for c in clean]
    k = next((i for i, t in enumerate(truths) if t is not None), 0)
    t = truths[k] if truths else None
    if t is not None:
        iod_t = interocular(t)
        err_clean = np.linalg.norm(clean[k]["landmarks"] - t, axis=1)
        err_occ = np.linalg.norm(occluded[k]["landmarks"] - t, axis=1)
        per_lm, c_nme, o_nme = px * err_occ, 100 * err_clean.mean() / iod_t, 100 * err_occ.mean() / iod_t
    else:
        per_lm, c_nme, o_nme = px * moves[k], None, None
    g_cov, g_vis = ellipse_growth(clean[k].get("covariance"), occluded[k].get("covariance"), covered[k])
    return ModelResult(name, per_lm, c_nme, o_nme, px * float(np.mean([m.mean() for m in moves])),
                       100 * float(np.mean([m.mean() / max(i, 1e-9) for m, i in zip(moves, iods)])),
                       g_cov, g_vis, int(covered[k].sum()))


def _x(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"x{v:.2f}"


def model_text(r: ModelResult) -> str:
    """The markdown under a model's image."""
    if r.occluded_nme is not None:
        head = (f"**{r.name}** · error against the ground truth: **{r.occluded_nme:.2f} %** of the inter-ocular "
                f"distance with the occluder ({r.clean_nme:.2f} % without, {r.occluded_nme - r.clean_nme:+.2f} points)")
    else:
        head = (f"**{r.name}** · moved **{r.movement_px:.1f} px** ({r.movement_iod:.2f} % of the inter-ocular "
                f"distance) from its own unoccluded prediction: movement, not error (no ground truth)")
    return (f"{head} · error ellipses {_x(r.growth_covered)} on the {r.covered} covered points, "
            f"{_x(r.growth_visible)} on the visible ones")


def reading(g: ModelResult, f: ModelResult) -> str:
    """One line that says what the comparison shows."""
    grow = ""
    if np.isfinite(g.growth_covered) and g.covered:
        grow = (f" The graph model's ellipses grew {_x(g.growth_covered)} over the covered points "
                f"(FC baseline {_x(f.growth_covered)}): larger means the model knows it is less sure there.")
    if g.occluded_nme is not None:
        better = "graph model" if g.occluded_nme < f.occluded_nme else "FC baseline"
        return (f"**Reading:** on this occluded face the **{better}** is closer to the ground truth "
                f"({g.occluded_nme:.2f} % vs {f.occluded_nme:.2f} %); the occluder cost the graph model "
                f"{g.occluded_nme - g.clean_nme:+.2f} points and the FC baseline "
                f"{f.occluded_nme - f.clean_nme:+.2f}.{grow}")
    return (f"**Reading:** without ground truth only movement can be measured (graph model {g.movement_px:.1f} px, "
            f"FC baseline {f.movement_px:.1f} px), and a model can move *towards* the right answer; add the photo's "
            f"landmark file to see errors.{grow}")
