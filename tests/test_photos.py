"""Photo protocol (core.photos): one-to-one matching, scoring with misses, and the placement check
that leaves out annotations a photo file misplaces. Synthetic data only."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.photos import PhotoRecord, load_photos, match_faces, run_photos, score_photos
from tests.synth_faces import face_points


# --- matching ------------------------------------------------------------------------------------
def test_match_faces_one_to_one_by_iou():
    a, b = face_points(200), face_points(200, shift=(300, 0))
    near_a = a + 3.0
    far = face_points(200, shift=(0, 400))
    m = match_faces([far, near_a, a + 1.0], [a, b])
    assert [(i, j) for i, j, _ in m] == [(2, 0)]  # the closer of two candidates wins, once; far matches nothing
    assert m[0][2] > 0.9


def test_score_photos_recall_misses_and_unmatched():
    a, b = face_points(200), face_points(200, shift=(300, 0))
    extra = face_points(100, shift=(0, 500))
    res = score_photos([([a + 1.0, extra], [a, b]), ([], [a])])
    assert res["faces"] == 3 and res["matched"] == 1 and res["missed"] == 2 and res["unmatched"] == 1
    assert res["recall"] == pytest.approx(1 / 3)
    iod = np.linalg.norm(a[36] - a[45])
    assert res["nme"] == pytest.approx(np.sqrt(2) / iod, rel=1e-5)
    assert res["fr10"] == 0.0 and res["fr10_with_misses"] == pytest.approx(2 / 3)
    assert res["nme_with_misses"] == pytest.approx((np.sqrt(2) / iod + 0.2) / 3, rel=1e-5)


# --- placement check -----------------------------------------------------------------------------
def _photo_split(tmp_path, crop_sizes: dict, faces: list[str], size=(400, 300), scale=0.5):
    """A whole-photo split whose faces' crops (split "crops") came from originals of crop_sizes."""
    crops = [{"image": f"images/crops/helen_{i}.jpg", "source": "helen", "landmarks": [[0, 0]] * 68,
              "original": {"file": f"{i}.jpg", "size": list(wh), "to_crop": [[1, 0, 0], [0, 1, 0]]}}
             for i, wh in crop_sizes.items()]
    (tmp_path / "crops.jsonl").write_text("\n".join(json.dumps(c) for c in crops) + "\n")
    photo = {"image": "photos/helen_p.jpg", "source": "helen", "photo": "p", "split_of_crops": "crops",
             "size": list(size), "scale_from_original": scale,
             "faces": [{"id": i, "landmarks": face_points(200, shift=(60 * k, 0)).tolist()} for k, i in enumerate(faces)]}
    (tmp_path / "photos_x.jsonl").write_text(json.dumps(photo) + "\n")
    return tmp_path / "photos_x.jsonl"


def test_placement_check_excludes_faces_labelled_on_another_original(tmp_path):
    """A face whose crop came from an original that, scaled, is not this photo is left out (its
    landmarks sit in the wrong place); faces of this photo's original, and faces without a crop
    record, stay."""
    path = _photo_split(tmp_path, {"p_1": (800, 600), "p_2": (500, 520), "p_3": (801, 601)}, ["p_1", "p_2", "p_3", "p_4"])
    rec, = load_photos(path)
    assert rec.ids == ["p_1", "p_3", "p_4"] and rec.excluded == ("p_2",) and len(rec.faces) == 3
    everything, = load_photos(path, check_placement=False)
    assert everything.ids == ["p_1", "p_2", "p_3", "p_4"] and everything.excluded == ()
    res, _ = run_photos(lambda rgb: [], [PhotoRecord(np.zeros((300, 400, 3), np.uint8), "p", "helen", rec.faces,
                                                     rec.ids, rec.excluded)])
    assert res["faces"] == 3 and res["excluded"] == 1 and res["per_photo"][0]["excluded"] == ["p_2"]


def test_placement_check_needs_the_crop_split(tmp_path):
    path = _photo_split(tmp_path, {"p_1": (10, 10)}, ["p_1"])
    (tmp_path / "crops.jsonl").unlink()
    rec, = load_photos(path)
    assert rec.ids == ["p_1"] and rec.excluded == ()
