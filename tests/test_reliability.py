"""Issue 17: the decoding gate (declared size before any decoder), YAML numbers, CLI help, the load
test's default output and browser-safe error texts. The corpus through the three public paths is
in tests/test_bad_inputs.py."""
from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from bad_inputs import BOMB, corpus, hdr_bomb, png_bomb
from core.config import ConfigError, TrainConfig, from_dict, load_config
from core.images import decode_image

ROOT = Path(__file__).resolve().parent.parent
BOMBS = [c for c in corpus() if "_bomb" in c.name]


@pytest.fixture
def no_decoders(monkeypatch):
    """Any decoder call fails the test: refusals must come from the header alone."""
    def boom(*a, **k):
        raise AssertionError("a decoder ran")

    monkeypatch.setattr(cv2, "imdecode", boom)
    monkeypatch.setattr(ImageFile.ImageFile, "load", boom)


@pytest.mark.parametrize("case", BOMBS, ids=lambda c: c.name)
def test_bombs_are_refused_from_the_header(case, no_decoders):
    with pytest.raises(ValueError, match="too large") as err:
        decode_image(case.data)
    assert "the limit is 100 MP" in str(err.value)


@pytest.mark.parametrize("limit", [50_000_000, 20_000_000])
def test_the_callers_limit_is_the_one_quoted(limit, no_decoders):
    with pytest.raises(ValueError, match=f"the limit is {limit // 1_000_000} MP"):
        decode_image(hdr_bomb(*BOMB), max_pixels=limit)
    with pytest.raises(ValueError, match=f"the limit is {limit // 1_000_000} MP"):
        decode_image(png_bomb(8000, 7000), max_pixels=limit)
    with pytest.raises(ValueError, match=f"the limit is {limit // 1_000_000} MP"):
        decode_image(np.zeros((limit // 1000 + 1, 1000), np.uint8), max_pixels=limit)


def test_app_quotes_its_own_limit_for_an_opencv_bomb(tmp_path):
    from app.ui import MAX_PIXELS, UserInputError, read_image_file

    p = tmp_path / "bomb.hdr"
    p.write_bytes(hdr_bomb(*BOMB))
    with pytest.raises(UserInputError, match=f"accepts up to {MAX_PIXELS // 1_000_000} MP") as err:
        read_image_file(str(p))
    assert "12000x12000" in str(err.value)


@pytest.mark.parametrize("ext", [".hdr", ".pfm", ".pam", ".ppm", ".pgm", ".tiff", ".webp", ".jp2", ".ras", ".bmp",
                                 ".png", ".jpg"])
def test_every_opencv_format_reads_its_header_and_decodes(ext):
    rng = np.random.default_rng(0)
    img = rng.random((40, 50, 3), dtype=np.float32) * (4.0 if ext in (".hdr", ".pfm") else 1.0)
    arr = img if ext in (".hdr", ".pfm") else (np.clip(img, 0, 1) * 255).astype(np.uint8)
    ok, buf = cv2.imencode(ext, arr[:, :, 0] if ext == ".pgm" else arr)
    assert ok
    data = buf.tobytes()
    from core.image_headers import parse_header

    hdr = parse_header(data)
    assert (hdr.width, hdr.height) == (50, 40)
    out, scale = decode_image(data)
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8 and scale == 1.0
    if ext in (".hdr", ".pfm"):  # radiance above 1: scaled so the brightest value is white
        assert out.max() == 255 and out.mean() > 60


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "WEBP", "PNG", "JPEG", "BMP", "TGA", "PCX", "PPM", "JPEG2000"])
def test_pillow_formats_still_decode(fmt):
    b = io.BytesIO()
    Image.fromarray(np.full((40, 50, 3), 100, np.uint8)).save(b, fmt)
    out, _ = decode_image(b.getvalue())
    assert out.shape == (40, 50, 3)


def test_header_and_decoder_must_agree(monkeypatch):
    ok, buf = cv2.imencode(".hdr", np.ones((40, 50, 3), np.float32))
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda d, f: real(d, f)[:20])
    with pytest.raises(ValueError, match="differs from the header"):
        decode_image(buf.tobytes())


def test_eps_is_never_handed_to_ghostscript():
    with pytest.raises(ValueError, match="not a readable image"):
        decode_image(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n0 0 moveto showpage\n")


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("1.0e-3", 1e-3), (".5", 0.5), ("5.", 5.0), ("+2", 2.0),
                                         ("-1.5E+2", -150.0), ("1_000", 1000.0), (" 2e-4 ", 2e-4)])
def test_yaml_numbers_in_every_notation(tmp_path, text, value):
    p = tmp_path / "cfg.yaml"
    p.write_text(f"lr: {text}\naugment:\n  rotation: {text}\n")
    cfg = load_config(p)
    assert cfg.lr == pytest.approx(value) and isinstance(cfg.lr, float)
    assert cfg.augment.rotation == pytest.approx(value)
    assert load_config(p, [f"weight_decay={text}"]).weight_decay == pytest.approx(value)


@pytest.mark.parametrize("text", ["fast", "nan", "inf", "1e", "e3", "1__0", "_1", "0x10", "1.2.3", "1,5", ""])
def test_number_like_garbage_is_still_refused(text):
    with pytest.raises(ConfigError, match="expected a number"):
        from_dict(TrainConfig, {"lr": text})


def test_predict_help_names_the_real_default_model(capsys):
    from core.checkpoint import DEFAULT_WEIGHTS
    from core.predict import main

    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert DEFAULT_WEIGHTS.name in help_text and "sdfl_graph" not in help_text


def test_load_test_writes_json_only_when_asked():
    from benchmarks.load_test import build_parser

    assert build_parser().parse_args([]).json is None
    assert build_parser().parse_args(["--json", "x.json"]).json == "x.json"


def test_soak_memory_verdict():
    from benchmarks.soak import memory_verdict

    rows = lambda mem: [{"rss_mb": m} for m in mem]  # noqa: E731
    flat = memory_verdict(rows([600, 650, 680, 690, 695, 697, 698, 698, 699, 699]), 500.0, 5, 0.05)
    assert flat["verdict"] == "ok" and flat["slope_flattens"]
    leak = memory_verdict(rows([600 + 30 * i for i in range(10)]), 500.0, 5, 0.05)
    assert leak["verdict"] == "possible leak" and leak["tail_growth"] > 0.05


def test_error_texts_carry_no_server_paths():
    from app.errors import public_reason, public_text

    cwd = os.getcwd()
    for msg in [f"Cannot move {cwd}/README.md to the gradio cache dir", f"[Errno 2] No such file: '{cwd}/w/a.json'",
                "/tmp/gradio/abc/t.png is corrupt", f"cwd is {cwd}", "file:///etc/passwd", "C:\\Users\\me\\a.png bad"]:
        out = public_text(msg)
        assert cwd not in out and "/tmp/" not in out and "/etc" not in out and "Users" not in out, out
    assert public_text(f"{cwd}/README.md").endswith("README.md")
    assert public_text("ratio 1/2") == "ratio 1/2"
    assert len(public_reason(ValueError("x" * 1000))) == 300
