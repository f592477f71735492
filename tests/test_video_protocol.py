"""Video protocol scoring (core.video.score_sequence) and the benchmark's same-frame comparison
(benchmarks/video.py paired): missed face-frames are failures and are left out of the paired mean."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from core.video import score_sequence
from tests.synth_faces import face_points

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


def _frames():
    g = face_points(200).astype(np.float64) + [100, 100]
    off = np.zeros_like(g)
    off[:, 0] = 0.02 * np.linalg.norm(g[45] - g[36])  # 2 % of the inter-ocular distance
    return g, [{"truth": [g], "preds": [g + off], "ids": [0]},
               {"truth": [g], "preds": [], "ids": []},  # missed
               {"truth": [g], "preds": [g + 6 * off], "ids": [0]}]  # matched, NME 12 %: a failure


def test_score_sequence_keeps_every_face_frame():
    _, frames = _frames()
    r = score_sequence(frames)
    assert r["face_frames"] == 3 and r["missed"] == 1 and r["failures"] == 2
    assert r["frame_nme"][0] == pytest.approx(0.02) and r["frame_nme"][1] == np.inf
    assert r["frame_nme"][2] == pytest.approx(0.12) and r["mean_nme"] == pytest.approx(0.07)


def test_paired_mean_uses_the_face_frames_both_methods_found():
    import video as bench

    g, frames = _frames()
    a = bench.aggregate([{**score_sequence(frames), "ms": 1.0}])
    other = [dict(f, preds=[g], ids=[1]) for f in frames]
    other[2] = dict(frames[2], preds=[], ids=[])  # the other method misses frame 2 instead
    b = bench.aggregate([{**score_sequence(other), "ms": 1.0}])
    assert a["frame_nme"][1] is None and b["frame_nme"][2] is None
    pa, pb, n = bench.paired(a, b)
    assert n == 1 and pa == pytest.approx(0.02) and pb == pytest.approx(0.0)


def test_readme_table_is_rewritten_between_its_marks(tmp_path):
    import video as bench

    g, frames = _frames()
    row = bench.aggregate([{**score_sequence(frames), "ms": 1.0}])
    table = {f"{m}|translate|10": row for m in ("video", "image")}
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench.README_MARKS[0]}\nold table\n{bench.README_MARKS[1]}\nrest\n")
    bench.update_readme(readme, table)
    once = readme.read_text()
    assert "old table" not in once and once.startswith("intro\n") and once.endswith("rest\n")
    assert "| 10 | 7.00 % / 66.7 % | 7.00 % / 66.7 % |" in once  # frames 0 and 2: (2 + 12) / 2
    bench.update_readme(readme, table)
    assert readme.read_text() == once
