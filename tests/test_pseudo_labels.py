"""core.pseudo_labels: mirror mapping, the mirror-ensemble filter, kept records, and their use in training."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from core.config import TrainConfig, from_dict
from core.data import load_jsonl
from core.mirror import mirror_points
from core.pseudo_labels import label_image, label_records, main
from core.train import Trainer
from tests.synth_faces import face_points, write_split
from train_runs import cfg_dict

SIZE = 256


@dataclass
class FakeFace:
    landmarks: np.ndarray
    covariance: np.ndarray | None


class FakeAligner:
    """Predicts the true points of the one synthetic face (mirrored on the mirror image), plus an error on
    mirror images (`flip_shift` px) and a predicted sigma (`sigma` px); no face when `blind`."""

    def __init__(self, truth: np.ndarray, flip_shift: float = 0.0, sigma: float = 1.0, blind: bool = False):
        self.truth, self.flip_shift, self.sigma, self.blind = truth, flip_shift, sigma, blind
        self.weights = "fake"

    def predict(self, img):
        if self.blind:
            return []
        mirrored = not np.array_equal(img, self.original)
        pts = mirror_points(self.truth, img.shape[1] - 1) + (self.flip_shift if mirrored else 0.0)
        pts = pts if mirrored else self.truth
        cov = np.tile(np.eye(2) * self.sigma ** 2, (68, 1, 1))
        return [FakeFace(pts.astype(np.float32), cov.astype(np.float32))]


def _aligner(img, truth, **kw) -> FakeAligner:
    a = FakeAligner(truth, **kw)
    a.original = img
    return a


def test_label_keeps_agreeing_sure_faces_and_drops_the_others():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    truth = face_points(SIZE)
    iod = np.linalg.norm(truth[36] - truth[45])
    good = label_image(_aligner(img, truth), img)
    assert good.flip_error < 1e-6 and np.allclose(good.points, truth)
    assert good.sure()
    shifted = label_image(_aligner(img, truth, flip_shift=0.1 * iod), img)  # mirror run 10 % of d away
    assert shifted.flip_error == pytest.approx(0.1 * np.sqrt(2), rel=1e-6) and not shifted.sure()
    unsure = label_image(_aligner(img, truth, sigma=0.1 * iod), img)
    assert unsure.flip_error < 1e-6 and not unsure.sure()
    assert label_image(_aligner(img, truth, blind=True), img) is None


def test_label_records_writes_kept_faces_and_scores_them(tmp_path, monkeypatch, capsys):
    objs = write_split(tmp_path, n=3, split="unlabelled", size=SIZE)
    records = load_jsonl(tmp_path / "unlabelled.jsonl")
    import cv2

    class PerImage(FakeAligner):  # the truth of whichever image is asked, mirrored on its mirror image
        def predict(self, img):
            for r in records:
                src = cv2.cvtColor(cv2.imread(str(r.image)), cv2.COLOR_BGR2RGB)
                for mirrored, cand in ((False, src), (True, src[:, ::-1])):
                    if np.array_equal(img, cand):
                        pts = mirror_points(r.landmarks, SIZE - 1) if mirrored else r.landmarks
                        return [FakeFace(pts + (0.2 * self.flip_shift if mirrored and r is records[1] else 0),
                                         np.tile(np.eye(2), (68, 1, 1)).astype(np.float32))]
            return []

    fake = PerImage(None, flip_shift=100.0)
    kept, summary = label_records(fake, records, 0.025, 0.03)
    assert summary["faces"] == 3 and summary["kept"] == 2 and summary["nme_dropped"]["n"] == 1
    assert summary["nme_kept"]["mean"] < 1e-6
    assert [Path(k["image"]).name for k in kept] == [Path(objs[i]["image"]).name for i in (0, 2)]
    assert all(Path(k["image"]).is_absolute() and k["source"] == "pseudo:synthetic" for k in kept)
    # the command: a bad split is a clear error, not a traceback
    assert main(["--data", str(tmp_path), "--split", "nothing", "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err


def test_training_adds_pseudo_labels_with_their_weight(tmp_path):
    root = tmp_path / "faces68"
    write_split(root, n=12, max_angle=25, seed=0)
    extra = write_split(tmp_path / "lfw", n=3, split="unlabelled", seed=5)
    path = tmp_path / "pseudo.jsonl"
    path.write_text("".join(json.dumps({**o, "image": str((tmp_path / "lfw" / o["image"]).resolve())}) + "\n"
                            for o in extra))
    cfg = from_dict(TrainConfig, cfg_dict(root, epochs=1, data={"pseudo_labels": str(path), "pseudo_weight": 0.25}))
    plain = Trainer(from_dict(TrainConfig, cfg_dict(root, epochs=1)), tmp_path / "plain")
    trainer = Trainer(cfg, tmp_path / "run")
    assert len(trainer.train_records) == len(plain.train_records) + 3
    assert np.allclose(trainer.sample_weights[-3:], 0.25) and np.allclose(trainer.sample_weights[:-3], 1.0)
    assert np.allclose(trainer.mean_shape, plain.mean_shape)  # graph and mean shape from labelled faces only
    assert "pseudo-labels" in trainer.data_description()
    trainer.fit()


def test_holdout_labels_only_the_identities_training_keeps(tmp_path, monkeypatch, capsys):
    """--holdout F labels the identities that data.extra_holdout F keeps in training (core.data.split_by_photo,
    seed 0), so benchmarks/unseen.py --holdout F still scores people no model saw."""
    from core.data import split_by_photo

    write_split(tmp_path, n=10, split="extra", size=SIZE)
    records = load_jsonl(tmp_path / "extra.jsonl")
    asked = []

    class Truth(FakeAligner):  # the first record's face on every image (they agree with their mirror run)
        def __init__(self, weights=None):
            super().__init__(records[0].landmarks)

        def predict(self, img):
            asked.append(img.shape)
            return [FakeFace(self.truth if len(asked) % 2 else mirror_points(self.truth, img.shape[1] - 1),
                             np.tile(np.eye(2), (68, 1, 1)).astype(np.float32))]

    monkeypatch.setattr("core.inference.FaceAligner", Truth)
    out = tmp_path / "o.jsonl"
    assert main(["--data", str(tmp_path), "--split", "extra", "--holdout", "0.3", "--out", str(out)]) == 0
    kept, held = split_by_photo(records, 0.3, 0)
    assert held and len(asked) == 2 * len(kept)
    assert {json.loads(line)["photo"] for line in out.read_text().splitlines()} == {r.photo for r in kept}
    assert main(["--data", str(tmp_path), "--split", "extra", "--holdout", "1.5", "--out", str(out)]) == 2
    assert "--holdout" in capsys.readouterr().err
