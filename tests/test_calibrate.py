import json
import numpy as np
import pytest

from core.calibrate import fit_scale
from core.metrics import GAUSSIAN_COVERAGE as IDEAL
from core.metrics import mahalanobis2
from core.checkpoint import load_model


def test_fit_scale_recovers_the_variance_error_of_gaussian_errors():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(20000, 2))
    d2 = (r ** 2).sum(1)  # calibrated unit covariance
    assert fit_scale(d2) == pytest.approx(1.0, rel=0.05)
    assert fit_scale(d2 / 4.0) == pytest.approx(0.25, rel=0.05)  # covariances 4x too large
    s = fit_scale(d2 * 2.0)
    assert np.mean(d2 * 2.0 / s <= 1) == pytest.approx(IDEAL[0], abs=0.02)


def test_mahalanobis_of_known_covariance():
    pred = np.zeros((1, 2, 2))
    gt = np.array([[[2.0, 0.0], [0.0, 3.0]]])
    cov = np.array([[[4.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 9.0]]])[None]
    np.testing.assert_allclose(mahalanobis2(pred, gt, cov), [[1.0, 1.0]])


def test_cov_scale_scales_the_covariance_and_survives_save(tiny_weights, tmp_path):
    import torch
    from core.checkpoint import save_weights

    model, meta = load_model(tiny_weights)
    x = torch.rand(1, 3, model.cfg.input_size, model.cfg.input_size)
    with torch.inference_mode():
        c1 = model(x)["cov"]
    model.cov_scale.fill_(0.5)
    save_weights(tmp_path / "m", model, meta)
    again, _ = load_model(tmp_path / "m.safetensors")
    with torch.inference_mode():
        c2 = again(x)["cov"]
    torch.testing.assert_close(c2, c1 * 0.5)


def test_checkpoint_without_cov_scale_loads_uncalibrated(tiny_weights, tmp_path):
    """Checkpoints written before the calibration buffer existed load with scale 1."""


    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tiny_weights))
    tensors.pop("cov_scale")
    save_file(tensors, str(tmp_path / "old.safetensors"))
    meta = json.loads(tiny_weights.with_suffix(".json").read_text())
    for key in ("save_id", "tensors_sha256"):  # an old pair: written before they were recorded
        meta.pop(key)
    (tmp_path / "old.json").write_text(json.dumps(meta))
    model, _ = load_model(tmp_path / "old.safetensors")
    assert float(model.cov_scale) == 1.0


def test_calibrate_records_the_rejection_threshold_that_the_aligner_then_uses(straight_run, tmp_path):
    """A retrained model carries its own image-mode threshold in its JSON: no table by file name."""
    import shutil

    from core.calibrate import calibrate
    from core.inference import FaceAligner

    for suffix in (".safetensors", ".json"):
        shutil.copy(straight_run / f"best{suffix}", tmp_path / f"mine{suffix}")
    weights = tmp_path / "mine.safetensors"
    with pytest.raises(ValueError, match="reject-ratio"):
        calibrate(weights, reject_ratio=0.0)
    assert FaceAligner(weights, backend="torch").reject_ratio is None  # no threshold: nothing rejected
    calibrate(weights, reject_ratio=0.07)
    assert json.loads((tmp_path / "mine.json").read_text())["reject_ratio"] == 0.07
    assert FaceAligner(weights, backend="torch").reject_ratio == 0.07


def test_calibrate_records_the_stability_threshold_that_image_mode_then_uses(straight_run, tmp_path, monkeypatch):
    """--max-drift: the model's own stability threshold in its JSON, passed to the image pipeline."""
    import shutil

    from core import inference
    from core.calibrate import calibrate
    from core.image_faces import MAX_DRIFT
    from core.inference import FaceAligner

    for suffix in (".safetensors", ".json"):
        shutil.copy(straight_run / f"best{suffix}", tmp_path / f"mine{suffix}")
    weights = tmp_path / "mine.safetensors"
    with pytest.raises(ValueError, match="max-drift"):
        calibrate(weights, max_drift=-0.01)
    assert FaceAligner(weights, backend="torch", detector="haar").max_drift == MAX_DRIFT  # none recorded
    calibrate(weights, reject_ratio=0.07, max_drift=0.045)
    meta = json.loads((tmp_path / "mine.json").read_text())
    assert meta["max_drift"] == 0.045 and meta["reject_ratio"] == 0.07
    al = FaceAligner(weights, backend="torch", detector="haar")
    seen = {}

    def spy(*args, **kw):
        seen.update(kw)
        return inference.FaceList([])

    monkeypatch.setattr(inference, "predict_image", spy)
    al.predict(np.zeros((64, 64, 3), np.uint8))
    assert al.max_drift == 0.045 and seen["max_drift"] == 0.045


def test_calibrate_fits_point_offsets_that_the_aligner_then_applies(straight_run, tmp_path):
    """With a shape prior named in its JSON, calibrate also records the per-landmark offsets between the
    prior's points and the validation labels (refitted from scratch each time); FaceAligner's prior carries
    them, and in-sample they lower validation NME."""
    import shutil

    from conftest import link_prior
    from core.calibrate import calibrate
    from core.inference import FaceAligner

    for suffix in (".safetensors", ".json"):
        shutil.copy(straight_run / f"best{suffix}", tmp_path / f"mine{suffix}")
    weights = tmp_path / "mine.safetensors"
    info = calibrate(weights)
    assert "point_offsets" not in info and "point_offsets" not in json.loads((tmp_path / "mine.json").read_text())
    link_prior(weights, tmp_path)
    info = calibrate(weights)["point_offsets"]
    o = np.asarray(json.loads((tmp_path / "mine.json").read_text())["point_offsets"])
    assert o.shape == (68, 2) and info["mean_abs"] == pytest.approx(np.linalg.norm(o, axis=1).mean(), abs=1e-5)
    assert info["val_nme_after_in_sample"] <= info["val_nme_before"]
    assert np.allclose(FaceAligner(weights, backend="torch").shape_prior.offsets, o)
    assert np.allclose(np.asarray(json.loads((tmp_path / "mine.json").read_text())["point_offsets"]), o)
    again = calibrate(weights)["point_offsets"]  # fitted afresh, not on top of the recorded ones
    assert again["mean_abs"] == pytest.approx(info["mean_abs"], rel=0.05)
