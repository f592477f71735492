"""The Hugging Face Space layout: tools/build_space.py assembles a folder that tools/check_space.py
accepts, the checker catches what the Hub (or an honest licence) would refuse, and the app runs
from ONNX alone without importing torch. Tiny models only (no shipped weights needed)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import build_space, check_space  # noqa: E402


@pytest.fixture(scope="module")
def onnx_models(tiny_weights, tiny_fc_weights, tmp_path_factory):
    """The tiny graph and FC models in one folder, each with its <stem>.onnx."""
    from core.export_onnx import main as export

    from conftest import link_prior

    d = tmp_path_factory.mktemp("space_models")
    out = []
    for w in (tiny_weights, tiny_fc_weights):
        for suffix in (".safetensors", ".json"):
            shutil.copy(w.with_suffix(suffix), d / f"{w.stem}{suffix}")
        assert export(["--weights", str(d / f"{w.stem}.safetensors")]) == 0
        out.append(d / f"{w.stem}.safetensors")
    link_prior(out[0], d)  # the graph model names a shape prior
    return out


@pytest.fixture()
def space(onnx_models, tmp_path):
    folder = tmp_path / "space"
    build_space.build(folder, onnx_models)
    return folder


def test_built_space_passes_the_check(space, onnx_models):
    assert check_space.check(space) == []
    assert (space / "requirements.txt").read_text() == (ROOT / "space" / "requirements.txt").read_text()
    names = check_space.requirement_names(space / "requirements.txt")
    assert "onnxruntime" in names and not {"torch", "onnxruntime-gpu"} & set(names)
    assert (space / "weights" / "tiny_graph.onnx").is_file() and (space / "app" / "tabs" / "upload.py").is_file()
    assert (space / "weights" / "prior.json").is_file()  # the shape prior tiny_graph.json names
    assert not list((space / "weights").glob("*.safetensors"))  # ONNX only: the Space has no torch to read them
    from app.browser_webcam import page_files

    assert all((space / rel).read_bytes() == (ROOT / rel).read_bytes() for rel in page_files())
    fm = check_space.front_matter(space / "README.md")
    assert fm["license"] == "other" and (space / fm["license_link"]).is_file() and fm["app_file"] == "launch_app.py"
    assert not any("shared" in str(p) for p in space.rglob("*"))


@pytest.mark.parametrize("breakage, message", [
    ("big", "not in LFS"),
    ("binary", "binary file not in LFS"),
    ("torch", "does not belong on a CPU Space"),
    ("gpu", "does not belong on a CPU Space"),
    ("mit", "research-only data"),
    ("labels", "research data"),
    ("image", "an image outside"),
    ("no_onnx", "cannot run"),
    ("no_front_matter", "no front matter"),
    ("no_runtime", "in-browser webcam tab cannot run"),
    ("no_prior", "names it as its shape prior"),
])
def test_check_catches_what_a_push_would_regret(space, breakage, message):
    if breakage == "big":
        (space / "weights" / "huge.dat").write_bytes(b"x" * (check_space.LFS_LIMIT + 1))
    elif breakage == "binary":
        (space / "app" / "blob.dat").write_bytes(b"\0\1\2")
    elif breakage in ("torch", "gpu"):
        with open(space / "requirements.txt", "a") as f:
            f.write("torch==2.13.0\n" if breakage == "torch" else "onnxruntime-gpu==1.31.1\n")
    elif breakage == "mit":
        readme = space / "README.md"
        readme.write_text(readme.read_text().replace("license: other", "license: mit", 1))
    elif breakage == "labels":
        (space / "app" / "examples" / "face.pts").write_text("n_points: 68\n{\n}\n")
    elif breakage == "image":
        shutil.copy(ROOT / "app" / "examples" / "astronaut.jpg", space / "core" / "photo.jpg")
    elif breakage == "no_onnx":
        (space / "weights" / "tiny_fc.onnx").unlink()
    elif breakage == "no_prior":
        (space / "weights" / "prior.json").unlink()
    elif breakage == "no_runtime":
        (space / "app" / "static" / "vendor" / "onnxruntime-web" / "ort-wasm-simd-threaded.wasm.gz").unlink()
    elif breakage == "no_front_matter":
        readme = space / "README.md"
        readme.write_text(readme.read_text().split("\n---\n", 1)[1])
    problems = check_space.check(space)
    assert any(message in p for p in problems), problems
    assert subprocess.run([sys.executable, str(ROOT / "tools" / "check_space.py"), str(space)],
                          capture_output=True).returncode == 1


SERVE_PAGE = r"""
import gzip, json, sys
sys.path.insert(0, '.')
from fastapi import FastAPI
from fastapi.testclient import TestClient
from app import browser_webcam as bw
assert bw.ROOT.resolve() == __import__('pathlib').Path('.').resolve(), bw.ROOT  # the Space's own copy
app = FastAPI()
bw.mount(app, bw.BrowserWebcam.from_weights(sys.argv[1]))
c = TestClient(app)
out = {'page': c.get(bw.ROUTE + '/').status_code, 'ort': c.get(bw.ROUTE + '/config.json').json()['ort'],
       'detector': len(c.get(bw.ROUTE + '/models/detector.onnx').content),
       'detector_full': len(c.get(bw.ROUTE + '/models/detector_full.onnx').content)}
for name in bw.VENDOR_FILES:
    zipped = c.get(f'{bw.ROUTE}/vendor/{name}', headers={'Accept-Encoding': 'gzip'})
    plain = c.get(f'{bw.ROUTE}/vendor/{name}', headers={'Accept-Encoding': 'identity'})
    out[name] = [zipped.status_code, plain.status_code, zipped.content == plain.content,
                 plain.content[:4] == b'\0asm' if name.endswith('.wasm') else len(plain.content) > 1000]
print(json.dumps(out))
"""


def test_built_space_serves_the_in_browser_webcam(space, onnx_models):
    """The Space's own copy of the app serves the page, the detectors and ONNX Runtime Web (both
    builds; the WASM stored gzipped, sent gzipped or decompressed): no npm step on the Space."""
    from app import browser_webcam as bw

    r = subprocess.run([sys.executable, "-c", SERVE_PAGE, str(space / "weights" / "tiny_graph.safetensors")],
                       cwd=space, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out.pop("page") == 200 and out.pop("detector") == bw.DETECTOR_ONNX.stat().st_size
    assert out.pop("detector_full") == bw.DETECTOR_FULL_ONNX.stat().st_size
    assert out.pop("ort") == {"version": bw.ORT_WEB_VERSION, "wasm": True, "webgpu": True}
    assert out == {name: [200, 200, True, True] for name in bw.VENDOR_FILES}


TORCH_FREE = r"""
import sys, json
sys.modules['torch'] = None  # any 'import torch' now fails
from app.ui import build_demo, load_models
models = load_models(sys.argv[1], sys.argv[2], backend='auto', webcam_slots=1)
app = build_demo(models=models).landmark_app
res = app.api_landmarks(sys.argv[3])
up = app.run_upload(sys.argv[3], ['points', 'graph'])
occ = app.run_occlusion(sys.argv[3], 'box', 0.5, 0.7, 0.6, 0.3, 0, 3, 'gray', None)
print(json.dumps({'faces': len(res['faces']), 'backend': models.graph.backend, 'fc': models.fc.backend,
                  'upload': up[0] is not None, 'occlusion': occ[0] is not None}))
"""


def _assert_runs_without_torch(graph: Path, fc: Path, folder: Path):
    """TORCH_FREE in `folder` (its own copy of the app): API, upload and occlusion answer on ONNX Runtime."""
    r = subprocess.run([sys.executable, "-c", TORCH_FREE, str(graph), str(fc),
                        str(folder / "app" / "examples" / "astronaut.jpg")],
                       cwd=folder, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"faces": out["faces"], "backend": "onnx", "fc": "onnx", "upload": True, "occlusion": True}
    assert out["faces"] >= 1


def test_app_runs_from_onnx_without_torch(onnx_models):
    _assert_runs_without_torch(*onnx_models, ROOT)


def test_built_space_ships_onnx_only_and_runs_without_torch(space, onnx_models):
    """The Space's own copy of the app loads `<stem>.json` + `<stem>.onnx` (no safetensors there) and
    answers the API, the upload tab and the occlusion demo without importing torch."""
    graph, fc = (space / "weights" / w.name for w in onnx_models)
    assert not graph.is_file() and not fc.is_file()
    _assert_runs_without_torch(graph, fc, space)
