"""The Gradio app: handlers, and the served app called through gradio_client (tiny random weights
from conftest: junk coordinates, but 68 points). Drawing and plots: test_overlays.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from core import overlays as ov  # noqa: E402
from browser_env import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = ROOT / "app" / "examples" / "astronaut.jpg"


# ----------------------------------------------------------------------------- handlers


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("bad")
    text = d / "notes.jpg"
    text.write_text("this is a text file, not a photo\n" * 20)
    empty = d / "empty.jpg"
    empty.write_bytes(b"")
    noface = d / "gray.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(noface)
    huge = d / "huge.png"
    Image.new("1", (12000, 12000)).save(huge)  # 144 MP, a few hundred kB on disk
    return {"text": text, "empty": empty, "noface": noface, "huge": huge}


def test_handlers_upload_occlusion_webcam(demo, bad_files):
    app = demo.landmark_app
    out = app.run_upload(str(ASTRONAUT), ["points", "graph", "ellipses", "box"])
    img, jpath, _, adj_fig, unc_fig, status, state, crops = out
    assert img.shape == (512, 512, 3) and "face" in status
    assert len(crops) == len(state["faces"]) and max(crops[0][0].shape[:2]) == 400 and "face #0" in crops[0][1]
    data = json.loads(Path(jpath).read_text())
    assert len(data["faces"]) >= 1 and np.asarray(data["faces"][0]["landmarks"]).shape == (68, 2)
    assert np.asarray(data["faces"][0]["adjacency"]).shape == (68, 68)
    assert np.asarray(adj_fig.data[0].z, dtype=float).shape == (68, 68)
    assert len(unc_fig.data) == 2
    assert app.render_upload(state, []).shape == img.shape
    with pytest.warns(UserWarning):
        bad = app.run_upload(str(bad_files["text"]), ["points"])
    assert bad[0] is None and "not an image" in bad[5]
    with pytest.warns(UserWarning):
        huge = app.run_upload(str(bad_files["huge"]), ["points"])
    assert huge[0] is None and "megapixels" in huge[5]
    with pytest.warns(UserWarning):
        noface = app.run_upload(str(bad_files["noface"]), ["points"])
    assert noface[0].shape == (240, 320, 3) and "No face found" in noface[5] and noface[1] is None
    with pytest.warns(UserWarning):
        assert "No face" in app.run_occlusion(str(bad_files["noface"]), "box", .5, .5, .5, .5, 0, 1, "gray", None)[5]

    g_img, g_txt, f_img, f_txt, fig, status, st = app.run_occlusion(str(ASTRONAUT), "box", 0.5, 0.7, 0.6, 0.3, 0, 3,
                                                                    "gray", None)
    assert g_img.shape == f_img.shape and g_img.ndim == 3 and min(g_img.shape[:2]) >= 200  # zoomed on the face
    assert "px" in g_txt and "inter-ocular" in g_txt and "px" in f_txt
    assert "movement, not error" in g_txt and "ellipses" in g_txt and "Reading" in status
    assert len(fig.data) == 2 and len(fig.data[0].y) == 68 and "movement" in fig.layout.yaxis.title.text
    again = app.run_occlusion(str(ASTRONAUT), "random", 0.5, 0.7, 0.6, 0.3, 7, 4, "noise", st)
    assert again[-1] is st  # clean predictions reused

    frame = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    for _ in range(3):
        shown, status, info = app.webcam_frame(frame, ["points", "graph", "ellipses"], "session-a")
    assert shown.shape == frame.shape and not np.array_equal(shown, frame)
    assert "FPS" in status and "ms" in status and app.models.video[0].device_name in status
    # one readout, labelled, the same figures in the status line and the stream's JSON
    assert "Frames received from the browser" in status and "Model time" in status and "Device" in status
    assert info["device"] == app.models.video[0].device_name and f"{info['model_ms']:.1f} ms per frame" in status
    assert f"{info['received_fps']:.1f} FPS" in status and info["received_fps"] > 0
    assert info["faces"] and len(info["faces"][0]["landmarks"]) == 68 and info["faces"][0]["track_id"] is not None
    assert app.webcam_frame(None, [], "session-a")[0] is None


def test_upload_switches_between_graph_and_accurate_model(tiny_weights, tiny_fc_weights, tiny_heatmap_weights,
                                                           tmp_path):
    from app.ui import MODEL_ACCURATE, MODEL_GRAPH, LandmarkApp, load_models

    models = load_models(tiny_weights, tiny_fc_weights, accurate_weights=tiny_heatmap_weights, webcam_slots=1)
    assert models.graph.dynamic_adjacency and not models.accurate.dynamic_adjacency
    assert not models.fc.dynamic_adjacency
    app = LandmarkApp(models, results_dir=tmp_path)
    runs = {m: app.run_upload(str(ASTRONAUT), ["points", "graph"], model=m) for m in (MODEL_GRAPH, MODEL_ACCURATE)}
    for m, stem, title in ((MODEL_GRAPH, "tiny_graph", "Dynamic adjacency"),
                           (MODEL_ACCURATE, "tiny_heatmap", "fixed neighbourhood")):
        img, jpath, _, adj_fig, _, status, state, _ = runs[m]
        data = json.loads(Path(jpath).read_text())
        assert data["model"] == stem and stem in status and state["model"] == stem
        assert title in adj_fig.layout.title.text
        assert np.asarray(data["faces"][0]["landmarks"]).shape == (68, 2)
    # different models, different landmarks
    lm = [np.asarray(json.loads(Path(runs[m][1]).read_text())["faces"][0]["landmarks"]) for m in runs]
    assert np.abs(lm[0] - lm[1]).max() > 1.0
    # without a second model the choice falls back to the graph head
    app1 = LandmarkApp(load_models(tiny_weights, tiny_fc_weights, webcam_slots=1), results_dir=tmp_path)
    assert app1.models.accurate is None
    assert json.loads(Path(app1.run_upload(str(ASTRONAUT), ["points"], model=MODEL_ACCURATE)[1]).read_text())[
        "model"] == "tiny_graph"
    # one default: the upload tab's first choice and the API use the package default
    from app.tabs.upload import model_choices

    assert model_choices(models)[0][1] == MODEL_ACCURATE and model_choices(app1.models)[0][1] == MODEL_GRAPH
    api = app.api_landmarks(str(ASTRONAUT))
    assert np.allclose(np.asarray(api["faces"][0]["landmarks"]), lm[1], atol=1e-2)


def test_webcam_can_run_its_own_model(tiny_weights, tiny_fc_weights, tiny_heatmap_weights, tmp_path):
    from app.ui import LandmarkApp, load_models

    models = load_models(tiny_weights, tiny_fc_weights, webcam_weights=tiny_heatmap_weights, webcam_slots=1)
    assert Path(models.video[0].weights).stem == "tiny_heatmap" and Path(models.graph.weights).stem == "tiny_graph"
    app = LandmarkApp(models, results_dir=tmp_path)
    np.testing.assert_array_equal(app.webcam_neighbours, models.video[0].neighbours)
    frame = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    out, status, info = app.webcam_frame(frame, ["points", "graph"], "session-a")
    assert out.shape == frame.shape and "FPS" in status and "Model: **tiny_heatmap**" in status
    assert info["model"] == "tiny_heatmap"
    # default: the webcam runs the graph-head model
    assert Path(load_models(tiny_weights, tiny_fc_weights, webcam_slots=1).video[0].weights).stem == "tiny_graph"


def test_video_pool_resets_on_session_change():
    from app.ui import VideoPool

    class Fake:
        resets = 0

        def reset(self):
            self.resets += 1

    a, b = Fake(), Fake()
    pool = VideoPool([a, b])
    with pool.acquire("s1") as x1:
        pass
    with pool.acquire("s1") as again:
        assert again is x1
    with pool.acquire("s2") as x2:
        assert x2 is not x1  # the free, least recently used one
    assert a.resets + b.resets == 2  # once per takeover, not per frame


def test_api_description_matches_the_response():
    from app.api import API_DESCRIPTION, FACE_KEYS
    from app.io import face_dict
    from core.inference import Face

    face = Face(box=np.zeros(4), score=0.9, landmarks=np.zeros((68, 2)), covariance=np.tile(np.eye(2), (68, 1, 1)),
                adjacency=np.eye(68))
    assert tuple(face_dict(face)) == FACE_KEYS  # what /landmarks returns per face
    assert "adjacency" not in API_DESCRIPTION and all(k in API_DESCRIPTION for k in FACE_KEYS)


def test_overlays_scale_with_the_face(demo):
    from app.tabs.upload import NUMBERS_MIN_IOD, draw_scaled, face_style

    pts = np.asarray(json.loads(Path(demo.landmark_app.run_upload(str(ASTRONAUT), ["points"])[1]).read_text())[
        "faces"][0]["landmarks"])
    small = (pts - pts.mean(0)) * 40.0 / app_iod(pts) + 60.0  # IOD 40 px
    big = (pts - pts.mean(0)) * 200.0 / app_iod(pts) + 300.0  # IOD 200 px
    r_small, w_small, n_small = face_style(small)
    r_big, w_big, n_big = face_style(big)
    assert r_small < r_big and w_small < w_big and not n_small and n_big and 40 < NUMBERS_MIN_IOD < 200
    opts = ov.OverlayOptions(points=True, numbers=True, box=False)
    canvas = np.zeros((600, 600, 3), np.uint8)
    face = {"landmarks": small, "box": None}
    with_numbers, hidden = draw_scaled(canvas, [face], None, opts)
    without, _ = draw_scaled(canvas, [face], None, ov.OverlayOptions(points=True, box=False))
    assert hidden == 1 and np.array_equal(with_numbers, without)  # too small: numbers left to the zoom
    big_numbers, hidden = draw_scaled(canvas, [{"landmarks": big, "box": None}], None, opts)
    assert hidden == 0 and (big_numbers != draw_scaled(canvas, [{"landmarks": big, "box": None}], None,
                                                       ov.OverlayOptions(points=True, box=False))[0]).any()


def app_iod(pts):
    from app.io import interocular

    return interocular(pts)


def test_read_landmarks_file(tmp_path):
    from app.io import UserInputError, read_landmarks_file

    pts = np.arange(136, dtype=float).reshape(68, 2)
    pts_file = tmp_path / "a.pts"
    pts_file.write_text("version: 1\nn_points: 68\n{\n" + "\n".join(f"{x} {y}" for x, y in pts) + "\n}\n")
    np.testing.assert_allclose(read_landmarks_file(pts_file), pts[None])
    np.testing.assert_allclose(read_landmarks_file(pts_file, scale=2.0), pts[None] / 2)
    js = tmp_path / "b.json"
    js.write_text(json.dumps({"faces": [{"landmarks": pts.tolist()}, {"landmarks": (pts + 1).tolist()}]}))
    assert read_landmarks_file(js).shape == (2, 68, 2)
    assert read_landmarks_file(None) is None
    for bad in ("[1, 2, 3]", "not json", ""):
        f = tmp_path / "bad.json"
        f.write_text(bad)
        with pytest.raises(UserInputError):
            read_landmarks_file(f)


def test_occlusion_error_against_ground_truth(demo, tmp_path):
    """With a landmark file the numbers are errors: a truth 3 px right of the graph head's clean
    prediction gives it a clean error of exactly 3 px / IOD."""
    from app.io import interocular

    app = demo.landmark_app
    st = app.run_occlusion(str(ASTRONAUT), "box", 0.5, 0.7, 0.6, 0.3, 0, 3, "gray", None)[-1]
    truth = st["graph"][0]["landmarks"] * st["px"] + [3.0, 0.0]
    f = tmp_path / "astronaut.json"
    f.write_text(json.dumps({"landmarks": truth.tolist()}))
    g_img, g_txt, f_img, f_txt, fig, status, st2 = app.run_occlusion(
        str(ASTRONAUT), "box", 0.5, 0.7, 0.6, 0.3, 0, 3, "gray", st, str(f))
    expected = 100 * 3.0 / interocular(truth)
    assert f"({expected:.2f} % without" in g_txt and "error against the ground truth" in g_txt
    assert "ground truth" in status and "Reading" in status and "error" in fig.layout.yaxis.title.text
    assert st2 is st


def test_app_modules_are_small():
    for f in sorted((ROOT / "app").rglob("*.py")):
        n = len(f.read_text().splitlines())
        assert n <= 300, f"{f.relative_to(ROOT)} has {n} lines (keep each app module <= 300)"


@pytest.mark.parametrize("flag", ["--weights", "--webcam-weights"])
def test_launch_without_weights_exits_nonzero(tmp_path, flag):
    r = subprocess.run([sys.executable, str(ROOT / "launch_app.py"), flag, str(tmp_path / "nope.safetensors")],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2
    assert "weights not found" in r.stderr and "nope.safetensors" in r.stderr


# ----------------------------------------------------------------------------- served app + API


@pytest.fixture(scope="module")
def server(demo):
    from app.ui import launch

    port = free_port()
    launch(demo, "127.0.0.1", port, max_file_size="5mb", prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def _landmarks(client, path):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), api_name="/landmarks")


def test_api_landmarks(client):
    res = _landmarks(client, ASTRONAUT)
    assert set(res) >= {"faces", "device", "latency_ms"}
    assert len(res["faces"]) >= 1
    for face in res["faces"]:
        assert np.asarray(face["landmarks"]).shape == (68, 2)
        assert np.asarray(face["covariance"]).shape == (68, 2, 2)
        assert len(face["box"]) == 4
    assert res["latency_ms"] > 0 and res["device"]
    assert res["image_size"] == [512, 512]


def test_api_no_face_is_an_empty_answer(client, bad_files):
    res = _landmarks(client, bad_files["noface"])
    assert res["faces"] == [] and "no face" in res["message"].lower()
    assert len(_landmarks(client, ASTRONAUT)["faces"]) >= 1


@pytest.mark.parametrize("kind, message", [("text", "not an image"), ("empty", "empty"), ("huge", "megapixels")])
def test_api_bad_input_is_readable_and_server_survives(client, bad_files, kind, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        _landmarks(client, bad_files[kind])
    assert message in str(err.value).lower()
    assert len(_landmarks(client, ASTRONAUT)["faces"]) >= 1  # the next good request still works


def test_upload_over_size_limit_is_refused(client, tmp_path):
    big = tmp_path / "big.jpg"
    big.write_bytes(os.urandom(6 * 1024 * 1024))  # the test server allows 5 MB
    with pytest.raises(Exception) as err:
        _landmarks(client, big)
    assert "size" in str(err.value).lower() or "large" in str(err.value).lower() or "413" in str(err.value)
    assert len(_landmarks(client, ASTRONAUT)["faces"]) >= 1

