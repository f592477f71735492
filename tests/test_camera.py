"""core.camera: a webcam's degradations, as training draws them (augment.camera) and as the seeded
camera protocol applies them (core.evaluate --camera)."""
from __future__ import annotations

import numpy as np
import pytest

from core import camera
from core.config import AugmentConfig, ConfigError, from_dict
from core.data import FaceDataset, load_jsonl
from core.protocols import camera_frame, face_rng
from synth_faces import write_split


def _picture(size=96, seed=0) -> np.ndarray:
    """A smooth picture with an edge: what the degradations should disturb without moving."""
    y, x = np.mgrid[:size, :size] / size
    img = np.stack([120 + 80 * x, 100 + 60 * y, 140 - 50 * x * y], -1)
    img[size // 3: 2 * size // 3, size // 3: 2 * size // 3] = (230, 200, 180)
    return (img + np.random.default_rng(seed).normal(0, 1, img.shape)).clip(0, 255).astype(np.uint8)


def test_low_light_loses_levels_and_adds_noise_the_darker_the_frame():
    img = _picture()
    errors = []
    for gain in (0.5, 0.2, 0.08):
        out = camera.low_light(img, gain, np.random.default_rng(0))
        assert out.dtype == np.uint8 and out.shape == img.shape
        errors.append(np.abs(out.astype(float) - img).mean())
        assert abs(out.astype(float).mean() - img.mean()) < 4  # the gain restores the brightness
    assert errors[0] < errors[1] < errors[2]
    assert errors[2] > 5


def test_sensor_noise_grows_with_sigma_and_with_the_signal():
    flat = np.full((64, 64, 3), 20, np.uint8)
    bright = np.full((64, 64, 3), 220, np.uint8)
    assert np.array_equal(camera.sensor_noise(flat, 0.0, np.random.default_rng(0)), flat)
    sd = [camera.sensor_noise(flat, s, np.random.default_rng(1)).astype(float).std() for s in (3, 10)]
    assert 2 < sd[0] < sd[1] < 13
    sd_bright = camera.sensor_noise(bright, 10, np.random.default_rng(1)).astype(float).std()
    assert sd_bright > 1.2 * sd[1]  # shot noise: variance ~ 1 + x / 255


def test_jpeg_keeps_the_picture_and_loses_detail_with_quality():
    img = _picture()
    diffs = [np.abs(camera.jpeg(img, q).astype(float) - img).mean() for q in (90, 15)]
    assert 0 < diffs[0] < diffs[1] < 10


def test_degrade_is_reproducible_per_seed_and_keeps_shape():
    img = _picture()
    a = camera.degrade(img, np.random.default_rng(3))
    b = camera.degrade(img, np.random.default_rng(3))
    c = camera.degrade(img, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(camera_frame(img, face_rng(5, 2)), camera.degrade(img, face_rng(5, 2), camera.PROTOCOL))


def test_training_ranges_cover_the_protocols():
    t, p = camera.TRAINING, camera.PROTOCOL
    assert t.gain[0] <= p.gain[0] and t.gain[1] >= p.gain[1]
    assert t.noise[0] <= p.noise[0] and t.noise[1] >= p.noise[1]
    assert t.quality[0] <= p.quality[0] and t.quality[1] >= p.quality[1]


def test_camera_augmentation_changes_pixels_not_landmarks(tmp_path):
    write_split(tmp_path, n=1, noise=0.0)
    recs = load_jsonl(tmp_path / "train.jsonl")
    no_aug = dict(rotation=0.0, scale=0.0, translation=0.0, flip=0.0, occlusion=0.0, color=0.0, blur=0.0,
                  rotation_prob=0.0)
    plain = FaceDataset(recs, 96, AugmentConfig(**no_aug))
    webcam = FaceDataset(recs, 96, AugmentConfig(**no_aug, camera=1.0))
    c0, p0, m0 = plain.sample(0, np.random.default_rng(0))
    for seed in range(3):
        c1, p1, m1 = webcam.sample(0, np.random.default_rng(seed))
        assert np.array_equal(p1, p0) and np.array_equal(m1, m0)
        assert c1.shape == c0.shape and np.abs(c1.astype(float) - c0).mean() > 1
    with pytest.raises(ConfigError, match="camera"):
        from_dict(AugmentConfig, {"camera": 1.5}, "augment")


@pytest.mark.parametrize("size", [64, 160, 256])
def test_camera_protocol_degrades_every_model_the_same_face_in_place(tmp_path, size):
    """Degraded at CAMERA_CROP px, then resampled to each model's input: the same matrix as the clean
    crop and the same picture, only noisier."""
    from core.evaluate import protocol_crops

    write_split(tmp_path, n=2, noise=0.0)
    recs = load_jsonl(tmp_path / "train.jsonl")
    for (clean, m0), (cam, m1) in zip(protocol_crops(recs, size), protocol_crops(recs, size, camera=0)):
        assert np.array_equal(m0, m1) and cam.shape == clean.shape == (size, size, 3)
        a, b = clean.astype(float).ravel(), cam.astype(float).ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.8 and np.abs(a - b).mean() > 1


def test_degrading_at_the_cameras_resolution_leaves_a_small_crop_less_noisy():
    """A 64 px crop degraded as a 192 px face and shrunk: its noise is averaged as the app's shrink does."""
    img = _picture(64)
    ranges = camera.CameraRanges(low_light=0.0, gain=(1.0, 1.0), noise=(12.0, 12.0), quality=(95, 95))
    here = camera.degrade_at(img, np.random.default_rng(0), ranges, 0)
    there = camera.degrade_at(img, np.random.default_rng(0), ranges, 192)
    assert here.shape == there.shape == img.shape
    err = [np.abs(x.astype(float) - img).mean() for x in (here, there)]
    assert err[1] < 0.6 * err[0]
    assert np.array_equal(here, camera.degrade(img, np.random.default_rng(0), ranges))


def test_a_video_keeps_one_camera_and_new_noise_per_frame():
    img = _picture()
    cam = camera.Camera.draw(np.random.default_rng(0))
    a, b = cam.frame(img, np.random.default_rng(1)), cam.frame(img, np.random.default_rng(2))
    assert not np.array_equal(a, b)
    assert abs(a.astype(float).mean() - b.astype(float).mean()) < 1  # the same exposure and gain
    dim = camera.Camera(gain=0.1, noise=3.0, quality=40)
    assert np.abs(dim.frame(img, np.random.default_rng(1)).astype(float) - img).mean() > \
        np.abs(camera.Camera(None, 3.0, 40).frame(img, np.random.default_rng(1)).astype(float) - img).mean()
