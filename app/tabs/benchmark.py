"""Benchmark tab: the result files of benchmarks/results/ as one table per set of faces (one row
per model; peers marked, with their caveat) and the error curves (CED) of the few models that
matter: the fp32 models and the peers, each in its own colour."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go

from .. import plots
from ..io import _reason, handler
from ..state import ROOT

log = logging.getLogger("sdfl.app")

# Sets of faces a result can belong to: (label, key). key = the result's protocol, or "extra" for
# the split of faces from another source.
FACE_SETS = [("Clean test faces", "default"), ("Occluded", "occlusion"), ("Motion blur", "blur"),
             ("Webcam frames", "camera"), ("Faces from another source", "extra")]
FACE_SET_NOTES = {
    "default": "faces68 `test`: the 300-W common subset (HELEN + LFPW test, 554 faces), crop around the labelled face.",
    "occlusion": "The same 554 faces, each with a seeded black ellipse over 15-35 % of the face.",
    "blur": "The same 554 faces with seeded motion blur (7-21 px).",
    "camera": "The same 554 faces as a dim webcam would give them: half under-exposed and brightened by gain, "
              "sensor noise, JPEG at quality 15-50 (seeded; `core.camera`).",
    "extra": "faces68 `extra`: 3,452 YouTube-Faces frames, a source no model here was trained on "
             "(integer labels: every model scores worse; compare rows, not with the test set).",
}
# Peers: (name shown, caveat on the test faces, caveat on faces from another source), by a key found
# in the result's name.
PEERS = {"dlib": ("dlib 68-point predictor (peer)",
                  "may have seen these test photos in training (300-W): optimistic on clean faces",
                  "trained on 300-W photos, like ours: no model here saw this source")}
MAX_CURVES = 5
HOW_TO_READ = ("**How to read it:** NME = mean landmark error divided by the distance between the outer eye "
               "corners (lower is better; 3.5 % is a few pixels on a 200 px face). FR@10 = share of faces "
               "with NME above 10 % (failures). AUC@10 = area under the curve below (higher is better). "
               "Commands for every figure: `docs/BENCHMARKS.md`.")


def face_set(result: dict, file_stem: str = "") -> str:
    """The FACE_SETS key of a result: split "extra" -> "extra" (a held-out part of it, "holdout" set,
    -> "extra_holdout": another set of faces, not shown), else its protocol (from the file name's suffix
    when the result does not say), default "default"."""
    if str(result.get("split", "")) == "extra":
        return "extra_holdout" if result.get("holdout") else "extra"
    protocol = result.get("protocol")
    if not protocol:
        protocol = next((k for _, k in FACE_SETS if file_stem.endswith("_" + k)), "default")
    return str(protocol)


def file_defaults(items: list) -> dict:
    """Which faces a result file's rows were scored on ("split", "holdout"), where every row that says
    agrees: a row that does not say (an older peer row, say) takes it, rather than passing for `test`."""
    out = {}
    for key in ("split", "holdout"):
        values = {json.dumps(r[key]) for _, r in items if isinstance(r, dict) and key in r}
        if len(values) == 1:
            out[key] = json.loads(values.pop())
    return out


def peer_caveat(name: str, which: str = "default") -> str | None:
    """A peer's caveat on one FACE_SETS key; None for our models."""
    return next((other if which == "extra" else test for key, (_, test, other) in PEERS.items()
                 if key in name.lower()), None)


def display_name(name: str) -> str:
    """A peer's full name ("dlib" -> "dlib 68-point predictor (peer)"); our models' names as given."""
    return next((n for key, (n, *_) in PEERS.items() if key in name.lower() and "(peer" not in name), name)


def int8_note(row: dict, rows: list[dict]) -> str:
    """What an int8 row is the export of: the float row of the same weights file, wherever the sort put
    it ("" for a float row)."""
    if "int8" not in row["name"]:
        return ""
    file = Path(str(row.get("weights", ""))).name
    twin = next((r for r in rows if "int8" not in r["name"] and not r.get("mirror_ensemble")
                 and Path(str(r.get("weights", ""))).name == file), None) if file else None
    return f"int8 ONNX export of: {display_name(twin['name'])}" if twin else \
        "int8 ONNX export (its float model is not listed)"


class BenchmarkTab:
    """Benchmark handlers (a mixin of app.ui.LandmarkApp: uses self.results_dir)."""

    def load_results(self) -> tuple[list[dict], list[str]]:
        """Results from results_dir/*.json: a result dict, a list of them, {"results": [...]}, or
        {name: result}. Returns (results with "name", "file" and "set", notes about skipped files:
        logged, not shown)."""
        results, notes = [], []
        files = sorted(self.results_dir.glob("*.json")) if self.results_dir.is_dir() else []
        for f in files:
            try:
                data = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError) as e:
                notes.append(f"skipped {f.name}: not valid JSON ({_reason(e)})")
                continue
            if isinstance(data, dict) and isinstance(data.get("results"), list):
                items = [(None, r) for r in data["results"]]
            elif isinstance(data, list):
                items = [(None, r) for r in data]
            elif isinstance(data, dict) and ("nme" in data or "nme_per_face" in data):
                items = [(None, data)]
            elif isinstance(data, dict):
                items = list(data.items())
            else:
                items = []
            found, shared = 0, file_defaults(items)
            for key, r in items:
                if not isinstance(r, dict) or not ("nme" in r or "nme_per_face" in r):
                    continue
                r = {**shared, **r}
                if not r.get("name"):
                    r["name"] = str(key) if key else Path(str(r["weights"])).stem if r.get("weights") else f.stem
                r["file"], r["set"] = f.name, face_set(r, f.stem)
                results.append(r)
                found += 1
            if not found:
                notes.append(f"skipped {f.name}: no result with 'nme' or 'nme_per_face'")
        for n in notes:
            log.info("benchmark tab: %s", n)
        return results, notes

    def benchmark_view(self, which: str = "default") -> tuple[gr.Dataframe, go.Figure, str]:
        """-> (table of the results on one set of faces, CED figure, note markdown)."""
        results, _ = self.load_results()
        label = dict((k, lab) for lab, k in FACE_SETS).get(which, which)
        if not results:
            note = (f"No benchmark results yet: run `python benchmarks/accuracy.py --data ../shared/data/faces68` "
                    f"(it writes `{self._rel(self.results_dir)}/`) and press **Reload**.")
            return (gr.Dataframe(value=None, visible=False),
                    plots.message_figure("No benchmark results yet.", "Cumulative error distribution"), note)
        chosen: dict[str, dict] = {}
        for r in results:
            if r["set"] == which:
                chosen[r["name"]] = r  # one row per model: a later file with the same name replaces
        rows = sorted(chosen.values(), key=lambda r: (peer_caveat(r["name"]) is not None, r.get("nme", 1.0)))
        headers = ["model", "NME (%)", "FR@10 (%)", "AUC@10", "faces", "note"]
        data = []
        for r in rows:
            s = plots.result_summary(r)
            note = peer_caveat(r["name"], which) or int8_note(r, rows)
            data.append([display_name(r["name"]), s["NME (%)"], s["FR@0.10 (%)"], s["AUC@0.10"], s["faces"], note])
        drawn = [r for r in rows if "int8" not in r["name"].lower() and r.get("nme_per_face")]
        peers = [r for r in drawn if peer_caveat(r["name"]) is not None]  # always drawn: what ours are read against
        ours = [r for r in drawn if peer_caveat(r["name"]) is None][:max(MAX_CURVES - len(peers), 1)]
        curves = [{**r, "name": display_name(r["name"])} for r in ours + peers]
        fig = plots.ced_figure(curves, title=f"Share of faces below each error: {label.lower()}")
        note = f"**{label}.** {FACE_SET_NOTES.get(which, '')}\n\n{HOW_TO_READ}"
        if not data:
            note = f"**{label}:** no results for this set of faces yet.\n\n" + HOW_TO_READ
        return gr.Dataframe(value={"headers": headers, "data": data}, visible=bool(data)), fig, note

    @staticmethod
    def _rel(p: Path) -> str:
        try:
            return str(p.resolve().relative_to(ROOT))
        except ValueError:
            return p.name


def build_benchmark_tab(app, demo: gr.Blocks) -> None:
    """The tab's layout and events, inside the current gr.Blocks; filled on page load."""

    @handler
    def benchmarks(which: str) -> tuple[gr.Dataframe, go.Figure, str]:
        return app.benchmark_view(which)

    with gr.Tab("Benchmark", id="benchmark"):
        bm_set = gr.Radio(FACE_SETS, value="default", label="Faces", elem_id="benchmark-set")
        bm_note = gr.Markdown(elem_id="benchmark-note")
        bm_table = gr.Dataframe(label="Results (lower NME is better)", interactive=False, wrap=False, visible=False,
                                elem_id="benchmark-table", max_height=420)
        bm_plot = gr.Plot(label="Cumulative error distribution", elem_id="benchmark-plot")
        bm_btn = gr.Button("Reload", size="sm")
    outputs = [bm_table, bm_plot, bm_note]
    bm_btn.click(benchmarks, [bm_set], outputs, api_visibility="undocumented")
    bm_set.change(benchmarks, [bm_set], outputs, api_visibility="undocumented", show_progress="hidden")
    demo.load(benchmarks, [bm_set], outputs, api_visibility="undocumented")
