"""In-browser webcam: a page where detection (BlazeFace short range; full range when it finds none),
the landmark model (this project's ONNX export) and the overlays run in the viewer's browser through ONNX Runtime Web
(WebGPU where the browser has it, WASM otherwise); the server only serves files.

Routes (added to the Gradio server's FastAPI app by `mount`, all under ROUTE):
    ROUTE/                     the page (sent with COOP/COEP so that, opened on its own, it is
                               cross-origin isolated and WASM may use threads)
    ROUTE/static/<file>        app/static/browser_webcam/*.js|css
    ROUTE/vendor/<file>        ONNX Runtime Web (app/static/vendor/onnxruntime-web, VENDOR_FILES)
    ROUTE/models/<id>.onnx     the landmark models (BrowserWebcam.models) and the face detectors
                               (detector.onnx, detector_full.onnx)
    ROUTE/models/<id>.json     {input_size, num_landmarks, neighbours (flat N x N 0/1), max_ratio[, shape_prior]}
    ROUTE/config.json          which models and runtime builds this server has
Only the files named here are served (no path from the request reaches the file system).
docs/BROWSER_WEBCAM.md describes the page, its assets and their sizes."""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException, Request  # the Gradio server's framework (a gradio dependency)
from fastapi.responses import FileResponse, JSONResponse, Response

from core.image_faces import DEFAULT_MIN_CONFIDENCE, ratio_at, reject_ratio_for
from core.shape_prior import prior_for

ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = Path(__file__).resolve().parent / "static" / "browser_webcam"
VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor" / "onnxruntime-web"
DETECTOR_ONNX = STATIC_DIR / "models" / "face_detection_short_range.onnx"
DETECTOR_FULL_ONNX = STATIC_DIR / "models" / "face_detection_full_range.onnx"  # loaded when short range finds none
DETECTORS = {"detector.onnx": DETECTOR_ONNX, "detector_full.onnx": DETECTOR_FULL_ONNX}  # route name -> file
ROUTE = "/sdfl-browser"
ORT_WEB_VERSION = "1.23.2"  # pinned in app/static/vendor/refresh.sh
WASM_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
WEBGPU_FILES = ("ort.min.mjs", "ort-wasm-simd-threaded.jsep.mjs", "ort-wasm-simd-threaded.jsep.wasm")
VENDOR_FILES = WASM_FILES + WEBGPU_FILES
STATIC_FILES = ("main.js", "pipeline.js", "imgproc.js", "boxes.js", "track.js", "tracking.js", "smoothing.js",
                "shape_prior.js", "detector.js", "draw.js", "style.css")
MAX_FACES = 4  # faces tracked in the page
IFRAME_HEIGHT = 640  # px: the page inside the Gradio tab
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
                     "Cross-Origin-Resource-Policy": "same-origin"}
MEDIA_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".wasm": "application/wasm",
               ".onnx": "application/octet-stream", ".html": "text/html"}


@dataclass(frozen=True)
class BrowserModel:
    id: str  # URL-safe name, e.g. "sdfl_flagship" or "sdfl_fast.int8"
    label: str
    onnx: Path
    meta: Path  # <stem>.json beside the weights (input_size, neighbours)


@dataclass
class BrowserWebcam:
    """What the page offers: `models` in menu order (the first is the default; `fast` the model
    'auto' switches to when the default takes over AUTO_SLOW_MS per frame in the viewer's browser),
    ONNX Runtime Web from `vendor_dir`."""
    models: list[BrowserModel]
    fast: str | None = None
    vendor_dir: Path = VENDOR_DIR
    max_faces: int = MAX_FACES
    _meta_cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_weights(cls, weights, fast_weights=None, int8: bool = True, **kw) -> "BrowserWebcam":
        """Models from `<stem>.safetensors` paths, in menu order the app's model (the flagship; the
        page's `auto` model), then the fast tier: each one's `<stem>.onnx` (and `<stem>.int8.onnx` when
        `int8`) that exists. A weights file without an ONNX export is left out."""
        models: list[BrowserModel] = []
        fast = None
        for w, kind in ((weights, "default"), (fast_weights, "fast tier")):
            if not w:
                continue
            st = Path(w).with_suffix(".safetensors")
            meta = st.with_suffix(".json")
            for suffix, prec in ((".onnx", "fp32"), (".int8.onnx", "int8")):
                onnx = st.with_suffix(suffix)
                mid = st.stem + ("" if prec == "fp32" else ".int8")
                if (prec == "int8" and not int8) or not (onnx.is_file() and meta.is_file()) \
                        or any(m.id == mid for m in models):
                    continue
                models.append(BrowserModel(mid, f"{st.stem} ({kind}, {prec})", onnx, meta))
                if kind == "fast tier" and fast is None:
                    fast = mid  # fp32: in ORT Web's WASM the int8 files are no faster (docs/BROWSER_WEBCAM.md)
        return cls(models=models, fast=fast, **kw)

    # -- what the page reads -----------------------------------------------------------------
    def vendor_ok(self, files=WASM_FILES) -> bool:
        """Each file is there, as itself or as `<name>.gz` (the repository carries the WASM gzipped)."""
        return all(_stored(self.vendor_dir / f) is not None for f in files)

    def config(self) -> dict:
        return {"models": [{"id": m.id, "label": m.label, "onnx": f"models/{m.id}.onnx", "meta": f"models/{m.id}.json",
                            "bytes": m.onnx.stat().st_size} for m in self.models],
                "default": self.models[0].id if self.models else None, "fast": self.fast,
                "detector": "models/detector.onnx", "detector_full": "models/detector_full.onnx",
                "max_faces": self.max_faces,
                "ort": {"version": ORT_WEB_VERSION, "wasm": self.vendor_ok(WASM_FILES),
                        "webgpu": self.vendor_ok(WEBGPU_FILES)}}

    def model_meta(self, m: BrowserModel) -> dict:
        if m.id not in self._meta_cache:
            meta = json.loads(m.meta.read_text())
            nb = meta["neighbours"]
            self._meta_cache[m.id] = {"input_size": int(meta["input_size"]),
                                      "num_landmarks": int(meta.get("num_landmarks", len(nb))),
                                      "neighbours": [1 if v > 0 else 0 for row in nb for v in row],
                                      # video mode loses a track above this (as FaceAligner's tracker)
                                      "max_ratio": ratio_at(DEFAULT_MIN_CONFIDENCE, reject_ratio_for(m.meta, meta))}
            prior = prior_for(m.meta, meta)  # the shape prior FaceAligner applies (core.shape_prior)
            if prior is not None:
                self._meta_cache[m.id]["shape_prior"] = {"mean": prior.mean.ravel().tolist(),
                                                         "modes": prior.modes.ravel().tolist(),  # K x 2N
                                                         "variances": prior.variances.tolist(),
                                                         "offsets": None if prior.offsets is None else
                                                         prior.offsets.ravel().tolist()}
        return self._meta_cache[m.id]

    def asset_sizes(self) -> dict[str, int]:
        """Bytes of every file the page may load (for the docs)."""
        files = {f"static/{f}": STATIC_DIR / f for f in STATIC_FILES}
        files["index.html"] = STATIC_DIR / "index.html"
        files.update({f"models/{name}": path for name, path in DETECTORS.items()})
        files.update({f"models/{m.id}.onnx": m.onnx for m in self.models})
        files.update({f"vendor/{f}": _stored(self.vendor_dir / f) or self.vendor_dir / f for f in VENDOR_FILES})
        return {k: p.stat().st_size for k, p in files.items() if p.is_file()}


def _stored(path: Path) -> Path | None:
    """The file as stored: `path`, else `<path>.gz`, else None."""
    for p in (path, path.with_name(path.name + ".gz")):
        if p.is_file():
            return p
    return None


def vendor_stored_name(name: str) -> str:
    """How the repository stores an ORT Web file: the WASM gzipped (`<name>.wasm.gz`, 4x smaller;
    sent as is with Content-Encoding: gzip), the rest as published."""
    return name + ".gz" if name.endswith(".wasm") else name


def page_files() -> list[str]:
    """Paths (relative to the repository root) of the files the page itself needs on a server:
    its HTML / JS / CSS, the face detector and ONNX Runtime Web as stored (WASM gzipped), with
    its package.json (MIT licence) and VERSION. The landmark models come from weights/.
    tools/build_space.py ships these; tools/check_space.py checks that a Space has them."""
    files = [STATIC_DIR / "index.html", *(STATIC_DIR / f for f in STATIC_FILES), *DETECTORS.values()]
    files += [VENDOR_DIR / vendor_stored_name(f) for f in VENDOR_FILES]
    files += [VENDOR_DIR / "package.json", VENDOR_DIR / "VERSION"]
    return [p.relative_to(ROOT).as_posix() for p in files]


def mount(app, page: BrowserWebcam, route: str = ROUTE) -> None:
    """Add the page's routes to a FastAPI app (the Gradio server's `demo.server_app`)."""
    def send(path: Path, request: Request | None = None):
        """The file. Where `<name>.gz` is stored beside it (or instead of it: the repository
        carries the WASM only gzipped), a browser that accepts gzip gets that (12 MB of WASM
        travel as 3 MB); one that does not gets it decompressed."""
        gz = path.with_name(path.name + ".gz")
        if not path.is_file() and not gz.is_file():
            raise HTTPException(404, f"{path.name} is not installed on this server")
        headers = dict(ISOLATION_HEADERS)
        media = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
        if gz.is_file():
            headers["Vary"] = "Accept-Encoding"
            if request is not None and "gzip" in request.headers.get("accept-encoding", ""):
                headers["Content-Encoding"] = "gzip"
                return FileResponse(gz, media_type=media, headers=headers)
            if not path.is_file():
                return Response(gzip.decompress(gz.read_bytes()), media_type=media, headers=headers)
        return FileResponse(path, media_type=media, headers=headers)

    models = {m.id: m for m in page.models}

    def index():
        return send(STATIC_DIR / "index.html")

    def static(name: str):
        if name not in STATIC_FILES:
            raise HTTPException(404)
        return send(STATIC_DIR / name)

    def vendor(name: str, request: Request):
        if name not in VENDOR_FILES:
            raise HTTPException(404)
        return send(page.vendor_dir / name, request)

    def model(name: str):
        stem, _, ext = name.rpartition(".")
        if name in DETECTORS:
            return send(DETECTORS[name])
        if stem not in models or ext not in ("onnx", "json"):
            raise HTTPException(404)
        if ext == "onnx":
            return send(models[stem].onnx)
        return JSONResponse(page.model_meta(models[stem]), headers=ISOLATION_HEADERS)

    def config():
        return JSONResponse(page.config(), headers=ISOLATION_HEADERS)

    app.add_api_route(f"{route}/", index, methods=["GET"], include_in_schema=False)
    app.add_api_route(f"{route}/config.json", config, methods=["GET"], include_in_schema=False)
    app.add_api_route(route + "/static/{name}", static, methods=["GET"], include_in_schema=False)
    app.add_api_route(route + "/vendor/{name}", vendor, methods=["GET"], include_in_schema=False)
    app.add_api_route(route + "/models/{name}", model, methods=["GET"], include_in_schema=False)


def tab(page: BrowserWebcam, route: str = ROUTE) -> None:
    """The Gradio tab's content (call inside `with gr.Tab(...)`): the page in an iframe."""
    import gradio as gr

    missing = "" if page.vendor_ok() else (
        "\n\n**ONNX Runtime Web is missing on this server** (the repository carries it in "
        "app/static/vendor/onnxruntime-web; `bash app/static/vendor/refresh.sh` restores it): "
        "use the server-side Webcam tab.")
    gr.Markdown("The camera, the face detector, the landmark model and the drawing all run **in your browser** "
                "(ONNX Runtime Web: WebGPU where your browser has it, WASM otherwise); the server only sends the "
                f"files once. Nothing leaves your machine. [Open it on its own page]({route}/) "
                "(multi-threaded WASM: that page is cross-origin isolated)." + missing)
    gr.HTML(f'<iframe src="{route}/" title="In-browser webcam" allow="camera; cross-origin-isolated" '
            f'style="width:100%;height:{IFRAME_HEIGHT}px;border:0" id="browser-webcam-frame"></iframe>',
            elem_id="browser-webcam")
