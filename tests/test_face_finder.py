"""The image-mode detection stage (core.face_finder): rotated copies mapped back, tiles and their
cuts, config, the merge of overlapping candidates. Synthetic data only."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from core.detectors import nms
from core.face_finder import Candidate, FaceFinder, FinderConfig, crosses_cut, rot90_matrix, tiles
from core.landmarks import apply_affine


def test_rot90_matrix_maps_rotated_pixels_back():
    img = np.zeros((30, 50), np.uint8)
    img[7, 41] = 255  # (x, y) = (41, 7)
    for k in (1, 2, 3):
        r = np.rot90(img, k)
        v, u = np.argwhere(r == 255)[0]
        np.testing.assert_allclose(apply_affine(rot90_matrix(k, 50, 30), np.array([[u, v]], float))[0], [41, 7])


def test_tiles_cover_the_image_with_overlap():
    t = tiles(1280, 700, 640)
    cover = np.zeros((700, 1280), bool)
    for x0, y0, x1, y1 in t:
        assert x1 - x0 <= 640 and y1 - y0 <= 640
        cover[y0:y1, x0:x1] = True
    assert cover.all() and len(t) == 6


def test_crosses_cut_only_on_internal_tile_edges():
    left_cut = (True, False, False, False)
    assert crosses_cut(np.array([-5.0, 10, 50, 60]), 100, 100, left_cut)
    assert not crosses_cut(np.array([-5.0, 10, 50, 60]), 100, 100, (False, True, True, True))  # photo edge
    assert not crosses_cut(np.array([0.0, 10, 50, 60]), 100, 100, left_cut)
    assert crosses_cut(np.array([50.0, 10, 100, 60]), 100, 100, (False, False, True, False))  # past x = 99


class TileFinder(FaceFinder):
    """FaceFinder whose 'model' sees one fixed face at photo box FACE (raw box = FACE, eyes level):
    in a tile it returns the face's box in tile pixels, cut to the tile when the tile cuts it."""
    FACE = np.array([300.0, 40, 520, 260])  # 220 px face in a 1000 x 600 photo

    def __init__(self):
        super().__init__(FinderConfig(short=False, full=False, pad=0.0, tile_levels=1), mediapipe=object())
        self.calls = []

    def _raw(self, rgb, selection):
        x0, y0 = self.origin  # set by the spy on _pass: the tile's corner in the photo
        b = self.FACE - [x0, y0, x0, y0]
        self.calls.append((x0, y0))
        h, w = rgb.shape[:2]
        if b[2] < 0 or b[3] < 0 or b[0] >= w or b[1] >= h:
            return []
        # a detector sees the visible part of a cut face but extrapolates its box a little past the edge
        vis = np.r_[max(b[0], -10.0), max(b[1], -10.0), min(b[2], w + 9.0), min(b[3], h + 9.0)]
        eyes = np.array([[vis[0] + 10, vis[1] + 10], [vis[2] - 10, vis[1] + 10]])
        return [(vis, 0.9, eyes)]


def test_tiles_drop_faces_they_cut(monkeypatch):
    """Tile passes keep a face only from tiles holding all of it: a partial face from a tile's cut
    edge never becomes a candidate (it converged on a distorted face in real photos)."""
    ff = TileFinder()
    img = np.zeros((600, 1000, 3), np.uint8)
    real_pass = FaceFinder._pass

    def spy(self, rgb, selection, back, source, cut=None):
        self.origin = (int(back[0, 2]), int(back[1, 2]))
        return real_pass(self, rgb, selection, back, source, cut)
    monkeypatch.setattr(TileFinder, "_pass", spy)
    monkeypatch.setattr("core.face_finder.MP_FULL_CALIBRATION", SimpleNamespace(apply=lambda b: b))
    cands = ff._upright(img)
    assert len(ff.calls) == len(tiles(1000, 600, 500)) == 6
    assert len(cands) == 1  # only the tile at (250, 0) holds the whole face; the other five cut it
    np.testing.assert_allclose(cands[0].box, TileFinder.FACE)


def test_finder_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown"):
        FinderConfig.from_dict({"tiles": 3})
    with pytest.raises(ValueError):
        FinderConfig(rotations="sometimes")


def test_merge_keeps_best_of_overlapping_candidates():
    a = Candidate(np.array([0, 0, 100, 100.0]), 0.6)
    b = Candidate(np.array([5, 5, 105, 105.0]), 0.9, angle=80.0)
    c = Candidate(np.array([300, 0, 400, 100.0]), 0.5)
    kept = nms([a, b, c])  # the detection stage's merge of candidates
    assert [k.score for k in kept] == [0.9, 0.5] and kept[0].angle == 80.0
