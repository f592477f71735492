"""faces68 loading, mirror semantics of the flip augmentation, splits and pose balancing."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from core.config import AugmentConfig, ConfigError, from_dict
from core.data import (DataError, FaceDataset, Record, canonical_crop, load_jsonl, mapped_convention,
                       normalized_shapes, pose_balance_weights, read_image, split_by_photo)
from core.metrics import in_convention
from core.landmarks import ANTIALIAS_BELOW, MIRROR_PERMUTATION, apply_affine, warp_crop
from synth_faces import MIRROR_PAIRS, draw_face, face_points, face_template, write_split

NO_AUG = dict(rotation=0.0, scale=0.0, translation=0.0, flip=0.0, occlusion=0.0, color=0.0, blur=0.0,
              rotation_prob=0.0)


# ---------------------------------------------------------------- mirror permutation
def test_mirror_permutation_is_an_involution():
    p = MIRROR_PERMUTATION
    assert sorted(p.tolist()) == list(range(68))
    assert np.array_equal(p[p], np.arange(68))


def test_mirror_permutation_pairs():
    p = MIRROR_PERMUTATION
    for a, b in ((36, 45), (0, 16), (48, 54), (39, 42), (17, 26), (31, 35), (60, 64)):
        assert p[a] == b and p[b] == a
    for i in (27, 28, 29, 30, 8, 33, 51, 57, 62, 66):
        assert p[i] == i
    expected = np.arange(68)
    for a, b in MIRROR_PAIRS:  # written out independently in synth_faces
        expected[a], expected[b] = b, a
    assert np.array_equal(p, expected)


def test_mirror_of_symmetric_template_is_itself():
    t = face_template()
    m = t.copy()
    m[:, 0] = 1 - m[:, 0]
    assert np.allclose(m[MIRROR_PERMUTATION], t)


# ---------------------------------------------------------------- flip augmentation
@pytest.fixture(scope="module")
def one_face(tmp_path_factory):
    root = tmp_path_factory.mktemp("one_face")
    write_split(root, n=1, noise=0.0)  # exactly mirror-symmetric landmarks
    return load_jsonl(root / "train.jsonl")


def _on_dot(crop: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N,) whether each point lies on a red dot (3x3 neighbourhood)."""
    ok = []
    for x, y in pts:
        xi, yi = int(round(x)), int(round(y))
        patch = crop[max(yi - 1, 0):yi + 2, max(xi - 1, 0):xi + 2].reshape(-1, 3).astype(int)
        ok.append(bool(np.any((patch[:, 0] > 150) & (patch[:, 1] < 110) & (patch[:, 2] < 110))))
    return np.array(ok)


def test_flip_keeps_left_right_semantics(one_face):
    plain = FaceDataset(one_face, 128, AugmentConfig(**NO_AUG))
    flipped = FaceDataset(one_face, 128, AugmentConfig(**{**NO_AUG, "flip": 1.0}))
    c0, p0, m0 = plain.sample(0, np.random.default_rng(0))
    c1, p1, m1 = flipped.sample(0, np.random.default_rng(0))
    assert m1[0, 0] < 0 < m0[0, 0]  # the second one really is mirrored
    assert np.abs(c1.astype(int) - c0[:, ::-1]).mean() < 1.0  # same crop, mirrored image
    for a, b in ((36, 45), (0, 16), (48, 54), (17, 26), (31, 35), (39, 42), (60, 64)):
        assert p1[a, 0] < p1[b, 0], (a, b)  # image-left point keeps the image-left index
    # landmarks still sit on the drawn dots of the flipped image
    assert _on_dot(c0, p0).all() and _on_dot(c1, p1).all()
    # a mirror-symmetric face gives (almost) the same landmarks flipped or not, index by index
    assert np.abs(p1 - p0).max() < 0.5
    # and without the permutation the indices would be swapped
    assert np.abs(p1[MIRROR_PERMUTATION] - p0)[[36, 45, 0, 16]].max() > 20


def test_getitem_tensors_and_seeded_augmentation(one_face):
    aug = AugmentConfig(rotation=30.0, rotation_prob=1.0, flip=0.5, occlusion=0.5, color=0.5, blur=0.5)
    ds = FaceDataset(one_face, 64, aug, cache=True, seed=3)
    x, y, w = ds[0]
    assert x.shape == (3, 64, 64) and y.shape == (68, 2) and float(w) == 1.0
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    x2, y2, _ = ds[0]
    assert np.array_equal(x.numpy(), x2.numpy()) and np.array_equal(y.numpy(), y2.numpy())  # same epoch, same sample
    draws = []
    for e in range(6):
        ds.set_epoch(e)
        draws.append(ds[0][1].numpy())
    assert len({d.tobytes() for d in draws}) == 6  # a new augmentation every epoch
    other = FaceDataset(one_face, 64, aug, cache=False, seed=3)
    other.set_epoch(5)
    assert np.array_equal(other[0][1].numpy(), draws[5])  # reproducible from (seed, epoch, index)


def test_rotation_augmentation_keeps_landmarks_on_dots(one_face):
    aug = AugmentConfig(**{**NO_AUG, "rotation": 40.0, "rotation_prob": 1.0, "scale": 0.1, "translation": 0.05})
    ds = FaceDataset(one_face, 128, aug)
    for seed in range(3):
        crop, pts, _ = ds.sample(0, np.random.default_rng(seed))
        inside = (pts > 2).all(1) & (pts < 125).all(1)
        assert _on_dot(crop, pts[inside]).all()


def test_no_augmentation_is_the_canonical_crop(one_face):
    ds = FaceDataset(one_face, 64, None)
    _, y, _ = ds[0]
    expected = apply_affine(canonical_crop(one_face[0].landmarks, 64), one_face[0].landmarks) / 64
    assert np.allclose(y.numpy(), expected, atol=1e-6)
    assert 0 < y.min() and y.max() < 1


def test_training_crops_of_large_faces_are_the_apps_antialiased_crops(tmp_path):
    """A face that the crop shrinks ~6x: training sees warp_crop's INTER_AREA crop (what the app feeds
    the model), not a bilinear warp that aliases fine texture."""
    img = np.indices((1600, 1600)).sum(0) % 2 * 255  # 1-pixel checkerboard: mean grey after a proper shrink
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), np.repeat(img[:, :, None], 3, 2).astype(np.uint8))
    rec = Record(path, face_points(1200) + 200.0, "big", "synthetic")
    crop, _, m = FaceDataset([rec], 128, None).sample(0)
    assert np.hypot(m[0, 0], m[1, 0]) < ANTIALIAS_BELOW  # the shrink that takes the INTER_AREA path
    photo = read_image(path)
    assert np.array_equal(crop, warp_crop(photo, m, 128))
    inside = crop[16:112, 16:112].astype(float)
    assert abs(inside.mean() - 127.5) < 3 and inside.std() < 3
    plain = cv2.warpAffine(photo, m, (128, 128), flags=cv2.INTER_LINEAR)[16:112, 16:112]
    assert plain.astype(float).std() > 20  # what the bilinear warp alone would have trained on


def test_low_resolution_augmentation_blurs_the_crop_and_keeps_the_landmarks(one_face):
    """augment.lowres: the crop a small source face would give (shrunk, enlarged back); same geometry."""
    plain = FaceDataset(one_face, 128, AugmentConfig(**NO_AUG))
    small = FaceDataset(one_face, 128, AugmentConfig(**{**NO_AUG, "lowres": 1.0, "lowres_min_side": 24}))

    def sharpness(img):
        return cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()

    c0, p0, _ = plain.sample(0, np.random.default_rng(0))
    for seed in range(4):
        c1, p1, _ = small.sample(0, np.random.default_rng(seed))
        assert c1.shape == c0.shape and np.array_equal(p1, p0)
        assert sharpness(c1) < 0.8 * sharpness(c0)
        assert abs(c1.astype(float).mean() - c0.astype(float).mean()) < 2  # the same picture, less detail
    with pytest.raises(ConfigError, match="lowres"):
        from_dict(AugmentConfig, {"lowres": 1.5}, "augment")



def test_face_occluders_sit_on_the_face_in_every_draw(one_face):
    """augment.occlusion_on_face: every occluder is centred in the landmark box and covers landmarks
    (hands, phones, hair), with solid, noise and texture fills; the landmarks do not move."""
    plain = FaceDataset(one_face, 128, AugmentConfig(**NO_AUG))
    c0, p0, _ = plain.sample(0, np.random.default_rng(0))
    (x0, y0), (x1, y1) = p0.min(0), p0.max(0)
    xy = np.clip(np.round(p0).astype(int), 0, 127)
    ds = FaceDataset(one_face, 128, AugmentConfig(**{**NO_AUG, "occlusion": 1.0, "occlusion_on_face": 1.0}))
    colours = []
    for seed in range(40):
        c, p, _ = ds.sample(0, np.random.default_rng(seed))
        assert np.array_equal(p, p0)
        changed = np.any(c != c0, axis=2)
        ys, xs = np.nonzero(changed)
        assert x0 <= xs.mean() <= x1 and y0 <= ys.mean() <= y1
        assert changed[xy[:, 1], xy[:, 0]].sum() >= 2
        colours.append(len(np.unique(c[changed], axis=0)))
    assert min(colours) == 1 and max(colours) > 100  # solid fills and noise or texture fills
    with pytest.raises(ConfigError, match="occlusion_on_face"):
        from_dict(AugmentConfig, {"occlusion_on_face": 1.5}, "augment")


def test_blur_length_lengthens_motion_blur(one_face):
    """augment.blur_length: motion-blur lines up to that share of the crop side (3-11 px without it)."""
    from core.data import _blur

    dot = np.zeros((160, 160, 3), np.uint8)
    dot[80, 80] = 255

    def extent(length: float) -> int:
        longest = 0
        for seed in range(200):
            out = _blur(dot, np.random.default_rng(seed), length)
            ys, xs = np.nonzero(out[..., 0])
            longest = max(longest, int(max(np.ptp(xs), np.ptp(ys))) + 1)
        return longest

    assert extent(0.0) <= 12
    assert extent(0.11) > 14
    with pytest.raises(ConfigError, match="blur_length"):
        from_dict(AugmentConfig, {"blur_length": 0.6}, "augment")


# ---------------------------------------------------------------- load_jsonl
def _bad_line(good, **change):
    obj = {**good, **change}
    return json.dumps({k: v for k, v in obj.items() if v is not ...}, allow_nan=True)


def test_load_jsonl_reads_valid_file(tmp_path):
    objs = write_split(tmp_path, n=3)
    recs = load_jsonl(tmp_path / "train.jsonl")
    assert len(recs) == 3
    assert recs[1].image == tmp_path / "images" / "train_001.jpg" and recs[1].image.is_file()
    assert recs[1].landmarks.shape == (68, 2) and recs[1].landmarks.dtype == np.float32
    assert np.allclose(recs[1].landmarks, objs[1]["landmarks"])
    assert recs[1].photo == "p1" and recs[1].source == "synthetic" and recs[1].weight == 1.0


@pytest.mark.parametrize("kind, msg", [
    ("json", "not valid JSON"),
    ("no_image", "'image'"),
    ("image_not_str", "'image'"),
    ("count", "expected 68 landmarks"),
    ("three_coords", "expected 68 landmarks"),
    ("nan", "NaN"),
    ("null", "NaN"),
    ("inf", "NaN or inf"),
    ("text", "not numbers"),
    ("no_landmarks", "no 'landmarks'"),
    ("array", "'image'"),
])
def test_load_jsonl_refuses_bad_lines(tmp_path, kind, msg):
    write_split(tmp_path, n=1)
    good = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    lm = good["landmarks"]
    bad = {
        "json": '{"image": "images/train_000.jpg", "landmarks": [[1, 2]',
        "no_image": _bad_line(good, image=...),
        "image_not_str": _bad_line(good, image=5),
        "count": _bad_line(good, landmarks=lm[:67]),
        "three_coords": _bad_line(good, landmarks=[p + [0] for p in lm]),
        "nan": _bad_line(good, landmarks=[[float("nan"), 1.0]] + lm[1:]),
        "null": _bad_line(good, landmarks=[[None, 1.0]] + lm[1:]),
        "inf": _bad_line(good, landmarks=lm[:5] + [[float("inf"), 1.0]] + lm[6:]),
        "text": _bad_line(good, landmarks=[["a", "b"]] + lm[1:]),
        "no_landmarks": _bad_line(good, landmarks=...),
        "array": "[1, 2, 3]",
    }[kind]
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n" + bad + "\n" + json.dumps(good) + "\n")
    with pytest.raises(DataError, match=msg) as e:
        load_jsonl(p)
    assert f"{p}:4:" in str(e.value)  # file:line (blank lines count)


def test_load_jsonl_without_landmarks_when_allowed(tmp_path):
    write_split(tmp_path, n=1)
    (tmp_path / "x.jsonl").write_text(json.dumps({"image": "images/train_000.jpg"}) + "\n")
    (rec,) = load_jsonl(tmp_path / "x.jsonl", require_landmarks=False)
    assert rec.landmarks is None and rec.photo == "images/train_000.jpg"


def test_load_jsonl_missing_or_empty(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no records"):
        load_jsonl(tmp_path / "empty.jsonl")


# ---------------------------------------------------------------- read_image
def test_read_image(tmp_path):
    img = draw_face(face_points(64), 64)
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    out = read_image(tmp_path / "a.png")
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.array_equal(out, img)  # RGB order, lossless png
    assert read_image(img) is img  # an image already in memory (generated photo sets) passes through
    (tmp_path / "fake.jpg").write_text("this is not an image\n")
    with pytest.raises(DataError, match="fake.jpg"):
        read_image(tmp_path / "fake.jpg")
    with pytest.raises(DataError, match="cannot read"):
        read_image(tmp_path / "missing.jpg")


def test_dataset_with_unreadable_image_raises_data_error(tmp_path):
    write_split(tmp_path, n=2)
    (tmp_path / "images" / "train_001.jpg").write_text("text, not a jpeg")
    recs = load_jsonl(tmp_path / "train.jsonl")
    with pytest.raises(DataError, match="train_001.jpg"):
        FaceDataset(recs, 64, cache=True)
    ds = FaceDataset(recs, 64, cache=False)
    ds[0]
    with pytest.raises(DataError):
        ds[1]


# ---------------------------------------------------------------- split by photo
def test_split_by_photo_keeps_photos_together(tmp_path):
    photos = [f"photo{i // 3}" for i in range(30)]  # 10 photos x 3 faces
    write_split(tmp_path, n=30, photos=photos, size=32)
    recs = load_jsonl(tmp_path / "train.jsonl")
    train, val = split_by_photo(recs, 0.3, seed=0)
    assert len(train) + len(val) == 30
    tp, vp = {r.photo for r in train}, {r.photo for r in val}
    assert not tp & vp
    assert len(vp) == 3 and len(val) == 9
    assert split_by_photo(recs, 0.3, seed=0)[1] == val  # deterministic
    other = [split_by_photo(recs, 0.3, seed=s)[1] for s in range(1, 6)]
    assert any({r.photo for r in o} != vp for o in other)  # the seed matters
    assert split_by_photo(recs, 0.0)[1] == []


# ---------------------------------------------------------------- pose balancing
def test_mapped_convention_moves_labels_back_by_the_offsets(tmp_path):
    """Labels made in another convention (points o_i away, in the face's frame) come back to the
    model's own points; a bad offsets file is a DataError naming it."""
    rng = np.random.default_rng(0)
    o = rng.normal(0, 0.02, (68, 2))
    o[[36, 45]] = 0
    faces = np.stack([face_points(200, angle_deg=a, scale=s) for a, s in ((-20, 0.9), (0, 1.0), (25, 1.1))])
    other = in_convention(faces, o)
    records = [Record(f"{i}.jpg", pts.astype(np.float32), str(i), "extra") for i, pts in enumerate(other)]
    (tmp_path / "o.json").write_text(json.dumps({"offsets": o.tolist()}))
    mapped = mapped_convention(records, tmp_path / "o.json")
    assert np.allclose(np.stack([r.landmarks for r in mapped]), faces, atol=1e-3)
    assert [r.photo for r in mapped] == ["0", "1", "2"] and records[0].landmarks is not mapped[0].landmarks
    (tmp_path / "bad.json").write_text(json.dumps({"offsets": o[:10].tolist()}))
    for name in ("bad.json", "missing.json"):
        with pytest.raises(DataError, match=name):
            mapped_convention(records, tmp_path / name)


def test_pose_balance_weights():
    rng = np.random.default_rng(0)
    base = face_template()
    yaw = np.r_[rng.normal(0, 0.01, 90), rng.normal(0.3, 0.01, 10)]  # 90 frontal, 10 turned faces
    shapes = np.stack([base + [[y * (1 - abs(p[0] - 0.5)), 0.0] for p in base] for y in yaw])
    shapes += rng.normal(0, 1e-3, shapes.shape)
    w = pose_balance_weights(shapes)
    assert w.shape == (100,)
    assert w.mean() == pytest.approx(1.0)
    assert w[90:].mean() > 3 * w[:90].mean()  # rare poses up-weighted
    assert np.all(w > 0)
    assert np.allclose(pose_balance_weights(shapes[:90]).mean(), 1.0)


def test_normalized_shapes_in_unit_crop(tmp_path):
    write_split(tmp_path, n=4, size=64)
    shapes = normalized_shapes(load_jsonl(tmp_path / "train.jsonl"), 64)
    assert shapes.shape == (4, 68, 2)
    assert shapes.min() > 0.05 and shapes.max() < 0.95
    # square box crop with margin 1.3: the larger box side spans 1 / 1.3 of the crop
    span = (shapes.max(1) - shapes.min(1)).max(1)
    assert np.allclose(span, 1 / 1.3, atol=2 / 64)


def test_downscale_data_scales_images_and_landmarks(tmp_path):
    from benchmarks.downscale_data import main as downscale

    objs = write_split(tmp_path / "d", n=3, size=256)
    assert downscale(["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--size", "128"]) == 0
    small = load_jsonl(tmp_path / "o" / "train.jsonl")
    assert len(small) == 3
    for obj, rec in zip(objs, small):
        assert read_image(rec.image).shape[:2] == (128, 128)
        np.testing.assert_allclose(rec.landmarks, (np.asarray(obj["landmarks"]) + 0.5) / 2 - 0.5, atol=1e-3)
