"""Plotly figures of the app: adjacency heatmap, per-landmark uncertainty, occlusion displacement,
CED curves. Pure functions of numpy arrays / result dicts (no Gradio)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from core.landmarks import CURVES, NUM_LANDMARKS
from core.metrics import auc, ced, failure_rate

_GROUP_STARTS = [idx[0] for idx in CURVES.values()]
_LAYOUT = dict(template="plotly_white", margin=dict(l=50, r=20, t=50, b=45), height=420)


def landmark_group(i: int) -> str:
    for name, idx in CURVES.items():
        if i in idx:
            return name
    return "other"


def message_figure(text: str, title: str = "") -> go.Figure:
    """An empty figure that carries a message (no face, no covariance, no results...)."""
    fig = go.Figure()
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=15))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=title, **{**_LAYOUT, "height": 300})
    return fig


def adjacency_heatmap(adjacency: np.ndarray | None, neighbours: np.ndarray | None = None,
                      title: str = "Dynamic adjacency") -> go.Figure:
    """68x68 heatmap of the per-image edge weights A[i, j] (row i aggregates from column j).
    Entries outside the sparse neighbourhood are blank; dotted lines separate jaw / brows / nose /
    eyes / mouth."""
    if adjacency is None:
        return message_figure("This model returns no adjacency.", title)
    a = np.asarray(adjacency, np.float64)
    z = a.copy()
    if neighbours is not None:
        z[np.asarray(neighbours) <= 0] = np.nan
    else:
        z[a == 0] = np.nan
    n = a.shape[0]
    text = [[f"{i} ({landmark_group(i)}) &larr; {j} ({landmark_group(j)})" for j in range(n)] for i in range(n)]
    zmax = float(np.nanmax(z)) if np.isfinite(z).any() else 1.0
    fig = go.Figure(go.Heatmap(z=z, colorscale="Plasma", zmin=0.0, zmax=zmax,
                               text=text, hovertemplate="%{text}<br>weight %{z:.3f}<extra></extra>",
                               colorbar=dict(title="weight")))
    for s in _GROUP_STARTS[1:]:
        for kw in (dict(x0=s - 0.5, x1=s - 0.5, y0=-0.5, y1=n - 0.5),
                   dict(y0=s - 0.5, y1=s - 0.5, x0=-0.5, x1=n - 0.5)):
            fig.add_shape(type="line", line=dict(color="rgba(0,0,0,0.25)", width=1, dash="dot"), **kw)
    fig.update_yaxes(autorange="reversed", title="landmark i", scaleanchor="x", constrain="domain")
    fig.update_xaxes(title="neighbour j", constrain="domain")
    fig.update_layout(title=title, **{**_LAYOUT, "height": 520})
    return fig


def uncertainty_bars(covariance: np.ndarray | None, iod: float | None = None,
                     title: str = "Per-landmark uncertainty (1-sigma)") -> go.Figure:
    """Grouped bars of the 1-sigma semi-axes sqrt(eigenvalues of the covariance) per landmark, in
    pixels (hover shows them relative to the inter-ocular distance too)."""
    if covariance is None:
        return message_figure("This model has no uncertainty head (no covariances).", title)
    from core.overlays import landmark_sigmas

    sig = landmark_sigmas(np.asarray(covariance, np.float64))
    idx = np.arange(len(sig))
    groups = [landmark_group(int(i)) for i in idx]
    fig = go.Figure()
    for k, name in ((0, "major axis"), (1, "minor axis")):
        rel = sig[:, k] / iod if iod and iod > 0 else np.full(len(sig), np.nan)
        fig.add_bar(x=idx, y=sig[:, k], name=name, customdata=np.stack([rel, groups], 1),
                    hovertemplate="landmark %{x} (%{customdata[1]})<br>%{y:.2f} px"
                                  "<br>%{customdata[0]:.4f} x IOD<extra>" + name + "</extra>")
    fig.update_layout(barmode="group", title=title, xaxis_title="landmark", yaxis_title="sigma (px)",
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"), **_LAYOUT)
    return fig


def displacement_chart(displacements: dict[str, np.ndarray], iod: float | None = None,
                       title: str = "Displacement under occlusion",
                       yaxis_title: str = "displacement (px)") -> go.Figure:
    """Per-landmark distance (px) of each model's occluded prediction from a reference (its own
    unoccluded prediction, or the ground truth: say which in the title / yaxis_title); one trace
    per model."""
    fig = go.Figure()
    for name, d in displacements.items():
        d = np.asarray(d, np.float64)
        idx = np.arange(len(d))
        rel = d / iod if iod and iod > 0 else np.full(len(d), np.nan)
        groups = [landmark_group(int(i)) for i in idx]
        fig.add_bar(x=idx, y=d, name=f"{name} (mean {d.mean():.1f} px)", customdata=np.stack([rel, groups], 1),
                    hovertemplate="landmark %{x} (%{customdata[1]})<br>%{y:.1f} px"
                                  "<br>%{customdata[0]:.3f} x IOD<extra>" + name + "</extra>")
    fig.update_layout(barmode="group", title=title, xaxis_title="landmark", yaxis_title=yaxis_title,
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"), **_LAYOUT)
    return fig


def result_summary(result: dict, threshold: float = 0.10) -> dict:
    """Table row of one benchmark result: given numbers first, computed from nme_per_face where
    missing."""
    per_face = np.asarray(result.get("nme_per_face") or [], np.float64)
    row = {"name": str(result.get("name", "?"))}
    for key in ("dataset", "subset", "split", "protocol", "backend", "device"):
        if key in result:
            row[key] = str(result[key])
    nme_v = result.get("nme", float(per_face.mean()) if per_face.size else None)
    fr = result.get("fr10", failure_rate(per_face, threshold) if per_face.size else None)
    au = result.get("auc10", auc(per_face, threshold) if per_face.size else None)
    row["NME (%)"] = None if nme_v is None else round(100 * float(nme_v), 3)
    row["FR@0.10 (%)"] = None if fr is None else round(100 * float(fr), 2)
    row["AUC@0.10"] = None if au is None else round(float(au), 4)
    n = result.get("faces", result.get("n", per_face.size or None))
    row["faces"] = None if n is None else int(n)
    return row


# Distinct, colour-blind-safe line colours (Okabe-Ito) for the few CED curves drawn at once.
CURVE_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]


def ced_figure(results: Sequence[dict], threshold: float = 0.10,
               title: str = "Cumulative error distribution") -> go.Figure:
    """CED curves (share of faces with NME <= x, x in [0, threshold]) of results that carry
    nme_per_face, each in its own colour (CURVE_COLORS), legend below the plot (never over it)."""
    fig = go.Figure()
    for r in results:
        per_face = np.asarray(r.get("nme_per_face") or [], np.float64)
        if per_face.size == 0:
            continue
        x, y = ced(per_face, threshold, steps=201)
        label = str(r.get("name", "?"))
        tags = [str(r[k]) for k in ("dataset", "subset", "split", "protocol") if r.get(k) and str(r[k]) not in label]
        if tags and not r.get("set"):  # the benchmark tab shows one set of faces at a time
            label += f" [{'/'.join(tags)}]"
        color = CURVE_COLORS[len(fig.data) % len(CURVE_COLORS)]
        fig.add_scatter(x=x, y=y, mode="lines", name=f"{label} (AUC {auc(per_face, threshold):.3f})",
                        line=dict(color=color, width=2.5))
    if not fig.data:
        return message_figure("No per-face NMEs in the results (nme_per_face) to draw CED curves.", title)
    fig.update_layout(title=dict(text=title, font=dict(size=14)), xaxis_title="NME (inter-ocular)",
                      yaxis_title="share of faces", yaxis_range=[0, 1.0], xaxis_range=[0, threshold],
                      legend=dict(orientation="h", x=0, xanchor="left", y=-0.22, yanchor="top"),
                      **{**_LAYOUT, "margin": dict(l=50, r=20, t=50, b=20), "height": 480})
    return fig


__all__ = ["adjacency_heatmap", "uncertainty_bars", "displacement_chart", "ced_figure", "result_summary",
           "message_figure", "landmark_group", "NUM_LANDMARKS"]
