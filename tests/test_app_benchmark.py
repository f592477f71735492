"""The app's Benchmark tab (app.tabs.benchmark): result files as one table per set of faces, peers with
their caveat, int8 rows named, CED curves (conftest's `demo` on tiny random weights; the files are written here)."""
from __future__ import annotations

import json


def test_benchmark_tab(demo):
    app = demo.landmark_app
    table, fig, note = app.benchmark_view()
    assert not table.visible and "No benchmark results" in note
    per_face = [0.03, 0.05, 0.12]
    (demo.results_dir / "graph.json").write_text(json.dumps(
        {"name": "graph", "nme": 0.04, "fr10": 0.01, "auc10": 0.6, "nme_per_face": per_face}))
    (demo.results_dir / "eval.json").write_text(json.dumps(
        {"weights": "weights/sdfl_fc.safetensors", "protocol": "default", "n": 2, "nme": 0.05,
         "nme_per_face": [0.04, 0.06]}))
    (demo.results_dir / "graph_int8_default.json").write_text(json.dumps(
        {"name": "graph, int8 ONNX", "nme": 0.041, "nme_per_face": per_face}))
    for protocol, nme in (("default", 0.02), ("occlusion", 0.1)):  # protocol only in the file name
        (demo.results_dir / f"dlib_{protocol}.json").write_text(json.dumps(
            {"name": "dlib", "nme": nme, "nme_per_face": [nme] * 3}))
    (demo.results_dir / "graph_occ.json").write_text(json.dumps(
        {"name": "graph", "protocol": "occlusion", "nme": 0.05, "nme_per_face": per_face}))
    (demo.results_dir / "broken.json").write_text("{not json")
    table, fig, note = app.benchmark_view()
    names = [row[0] for row in table.value["data"]]
    assert table.visible  # by NME, peers last:
    assert names == ["graph", "graph, int8 ONNX", "sdfl_fc", "dlib 68-point predictor (peer)"]
    assert "may have seen these test photos" in table.value["data"][-1][-1]  # the peer's caveat
    assert [t.name.split(" (AUC")[0] for t in fig.data] == ["graph", "sdfl_fc", "dlib 68-point predictor (peer)"]
    assert len({t.line.color for t in fig.data}) == 3 and fig.layout.legend.y < 0  # distinct, legend below
    assert "skipped" not in note and "broken" not in note and "NME" in note  # no developer notes
    occ, _, occ_note = app.benchmark_view("occlusion")
    assert [row[0] for row in occ.value["data"]] == ["graph", "dlib 68-point predictor (peer)"]
    assert "Occluded" in occ_note
    (demo.results_dir / "graph_camera.json").write_text(json.dumps(
        {"name": "graph", "protocol": "camera", "nme": 0.045, "nme_per_face": per_face}))
    cam, _, cam_note = app.benchmark_view("camera")
    assert [row[0] for row in cam.value["data"]] == ["graph"] and "Webcam frames" in cam_note


def test_benchmark_curves_always_include_the_peer(demo, tmp_path, monkeypatch):
    """More of our models than MAX_CURVES: the best of ours are drawn, and dlib's curve still is."""
    from app.tabs.benchmark import MAX_CURVES

    app = demo.landmark_app
    monkeypatch.setattr(app, "results_dir", tmp_path)
    for i in range(MAX_CURVES + 2):
        (tmp_path / f"m{i}_default.json").write_text(json.dumps(
            {"name": f"model {i}", "protocol": "default", "nme": 0.03 + i / 1000, "nme_per_face": [0.03, 0.04]}))
    (tmp_path / "dlib_default.json").write_text(json.dumps(
        {"name": "dlib", "protocol": "default", "nme": 0.0285, "nme_per_face": [0.02, 0.035]}))
    _, fig, _ = app.benchmark_view("default")
    names = [t.name.split(" (AUC")[0] for t in fig.data]
    assert len(names) == MAX_CURVES and names[-1] == "dlib 68-point predictor (peer)"
    assert names[:-1] == [f"model {i}" for i in range(MAX_CURVES - 1)]


def test_benchmark_tab_keeps_each_set_of_faces_apart(demo, tmp_path, monkeypatch):
    """A peer row that does not name its split stays with its file's faces, not the test table, and a
    held-out part of `extra` does not replace the whole split's rows."""
    app = demo.landmark_app
    monkeypatch.setattr(app, "results_dir", tmp_path)
    (tmp_path / "flagship_default.json").write_text(json.dumps(
        {"name": "flagship", "protocol": "default", "nme": 0.031, "nme_per_face": [0.031]}))
    (tmp_path / "unseen_extra.json").write_text(json.dumps(
        {"flagship": {"n": 30, "nme": 0.055, "split": "extra", "protocol": "default"},
         "dlib 68-point predictor (peer)": {"n": 30, "nme": 0.064}}))
    (tmp_path / "unseen_extra_holdout0.3.json").write_text(json.dumps(
        {"flagship": {"n": 9, "nme": 0.050, "split": "extra", "holdout": 0.3},
         "dlib 68-point predictor (peer)": {"n": 9, "nme": 0.062, "holdout": 0.3}}))
    clean, _, _ = app.benchmark_view("default")
    assert [(row[0], row[1]) for row in clean.value["data"]] == [("flagship", 3.1)]
    extra, _, _ = app.benchmark_view("extra")
    assert [(row[0], row[1], row[4]) for row in extra.value["data"]] == [
        ("flagship", 5.5, 30), ("dlib 68-point predictor (peer)", 6.4, 30)]
    assert "no model here saw this source" in extra.value["data"][-1][-1]  # not "may have seen these photos"


def test_benchmark_tab_says_which_model_an_int8_row_exports(demo, tmp_path, monkeypatch):
    """Rows are sorted by NME, so the float model of an int8 row is not always the row above it."""
    app = demo.landmark_app
    monkeypatch.setattr(app, "results_dir", tmp_path)
    rows = {"flagship": ("/x/weights/big.safetensors", 0.031), "flagship, int8": ("/y/weights/big.safetensors", .0313),
            "heatmap head": ("weights/heat.safetensors", 0.036), "fast tier, int8": ("w/fast.safetensors", 0.0396)}
    for i, (name, (w, nme)) in enumerate(rows.items()):
        (tmp_path / f"r{i}_default.json").write_text(json.dumps(
            {"name": name, "protocol": "default", "nme": nme, "n": 554, "weights": w}))
    table, _, _ = app.benchmark_view("default")
    notes = {row[0]: row[-1] for row in table.value["data"]}
    assert notes["flagship, int8"] == "int8 ONNX export of: flagship"
    assert "heatmap head" not in notes["fast tier, int8"] and "not listed" in notes["fast tier, int8"]
    assert notes["flagship"] == notes["heatmap head"] == ""
