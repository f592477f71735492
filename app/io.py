"""Input and output of the app's handlers: reading and checking uploaded images (and landmark
files), Face objects as arrays / JSON, the image component that passes uploads on unopened, and
the `handler` wrapper that turns every failure into a readable message."""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import sys
import traceback
import types
from pathlib import Path
from typing import Callable, Sequence

import gradio as gr
import numpy as np

from core import overlays as ov
from core.landmarks import NUM_LANDMARKS
from core.metrics import interocular as _interocular

from .errors import public_reason
from .state import MAX_PIXELS, UserInputError

log = logging.getLogger("sdfl.app")
LANDMARK_FILE_MAX_BYTES = 1_000_000  # a 68-point .pts / .json file is a few kB


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def face_view(face) -> dict:
    """A Face (or its to_dict()) as numpy arrays for drawing and plotting."""
    get = (lambda k: face.get(k)) if isinstance(face, dict) else (lambda k: getattr(face, k, None))
    cov = get("covariance")
    adj = get("adjacency")
    return {
        "box": np.asarray(get("box"), np.float64).reshape(4),
        "score": None if get("score") is None else float(get("score")),
        "landmarks": np.asarray(get("landmarks"), np.float64).reshape(-1, 2),
        "covariance": None if cov is None else np.asarray(cov, np.float64),
        "adjacency": None if adj is None else np.asarray(adj, np.float64),
    }


def interocular(points: np.ndarray) -> float:
    """Inter-ocular distance of one face's (68, 2) landmarks (core.metrics.interocular)."""
    return float(_interocular(np.asarray(points, np.float64)[None])[0])


def options_from(selected: Sequence[str] | None) -> ov.OverlayOptions:
    return ov.OverlayOptions.from_names([s for s in (selected or []) if s])


def _reason(e: BaseException) -> str:
    return public_reason(e)  # no server paths in user messages (app.errors)


def read_image_file(path: str | os.PathLike | None, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, float]:
    """Decode an uploaded file to RGB uint8, checking (from the header, before decoding) that it
    is an image of at most max_pixels. Returns (image, scale): scale = file pixels per returned
    pixel (core.images decodes very large files reduced). Raises UserInputError with a readable
    message."""
    from core.images import ImageTooLarge, decode_image

    if path is None or str(path) == "":
        raise UserInputError("No image: upload a photo (JPEG, PNG or WebP) first.")
    p = Path(path)
    if not p.is_file():
        raise UserInputError("The uploaded file did not arrive; please upload it again.")
    if p.stat().st_size == 0:
        raise UserInputError("The uploaded file is empty (0 bytes).")
    try:
        img, scale = decode_image(str(p), max_pixels=max_pixels)  # core.images' gate: header size first
    except ImageTooLarge as e:
        size = f"{e.width}x{e.height} ({e.pixels / 1e6:.0f} megapixels)" if e.width else f"over {e.pixels / 1e6:.0f} megapixels"
        raise UserInputError(f"The image is {size}; this app accepts up to {e.limit / 1e6:.0f} MP"
                             f"{'' if e.limit == max_pixels else ' for this format'}. Please downscale it and try again.") from None
    except (ValueError, OSError) as e:
        reason = _reason(e)
        if "not a readable image" in reason or "unknown or unsupported format" in reason:
            raise UserInputError("The uploaded file is not an image this app can read (JPEG, PNG, WebP, BMP, "
                                 "TIFF); is it a renamed or damaged file?") from None
        raise UserInputError(f"Could not use this image: {reason}") from None
    return img, float(scale)


def face_dict(face, scale: float = 1.0, adjacency: bool = False) -> dict:
    """JSON-ready dict of a Face in file pixels (Face.to_dict, with the adjacency if asked)."""
    f = face.to_file_pixels(scale)
    try:
        d = f.to_dict(adjacency=adjacency)
    except TypeError:  # a to_dict without the option
        d = f.to_dict()
    return _jsonable(d)


def _path_preprocess(self, payload):
    """Image preprocess that hands the uploaded file's path to the handler without opening it."""
    if payload is None:
        return None
    if getattr(payload, "path", None) and not (payload.url or "").startswith("data:"):
        return str(payload.path)
    try:
        return gr.Image.preprocess(self, payload)
    except gr.Error:
        raise
    except Exception:
        raise gr.Error("The uploaded data is not an image this app can read.", title="Bad input",
                       print_exception=False) from None


def ImageInput(**kwargs) -> gr.Image:  # noqa: N802 - reads like the component it makes
    """gr.Image(type="filepath") whose preprocess passes the uploaded file on unopened:
    read_image_file() then checks and decodes it once, with a readable message for every failure
    (the stock preprocess opens it with PIL first and fails with a bare error on, e.g., a renamed
    text file). An instance patch, not a subclass: Gradio writes a .pyi next to the module of
    every Component subclass."""
    comp = gr.Image(type="filepath", image_mode=None, **kwargs)
    comp.preprocess = types.MethodType(_path_preprocess, comp)
    return comp


def inference_mode():
    """torch.inference_mode() when torch is loaded (a torch-backend model), else nothing: the ONNX
    app never imports torch."""
    torch = sys.modules.get("torch")
    return torch.inference_mode() if torch is not None else contextlib.nullcontext()


def handler(fn: Callable) -> Callable:
    """Run a handler (under torch.inference_mode() when torch is in use); user errors become
    gr.Error(message), any other failure a generic gr.Error (logged with its traceback) so the
    server keeps serving."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            with inference_mode():
                return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UserInputError as e:
            raise gr.Error(str(e), title="Bad input", print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - last line of defence of a public server
            log.error("handler %s failed:\n%s", fn.__name__, traceback.format_exc())
            raise gr.Error(f"Processing failed ({type(e).__name__}: {_reason(e)}). Please try another image.",
                           title="Error") from None

    return wrapped


def read_landmarks_file(path: str | os.PathLike | None, scale: float = 1.0) -> np.ndarray | None:
    """Ground-truth landmarks of an uploaded file, (F, 68, 2) in the image's pixels divided by
    `scale` (file pixels per working pixel); None without a file. Formats: iBUG .pts
    ("n_points: 68" then x y lines inside braces), or JSON: a (68, 2) list, a list of them, or
    {"landmarks": ...} / {"faces": [{"landmarks": ...}]} (what this app's download contains).
    Raises UserInputError with a readable message."""
    if path is None or str(path) == "":
        return None
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        raise UserInputError("The landmarks file is empty or did not arrive.")
    if p.stat().st_size > LANDMARK_FILE_MAX_BYTES:
        raise UserInputError("The landmarks file is too large for 68-point landmarks (over 1 MB).")
    text = p.read_text(errors="replace")
    try:
        if "{" in text and "n_points" in text:  # iBUG .pts
            body = text[text.index("{") + 1:text.rindex("}")]
            data = [[float(v) for v in line.split()[:2]] for line in body.splitlines() if line.strip()]
        else:
            data = json.loads(text)
            if isinstance(data, dict):
                data = data.get("faces", data.get("landmarks"))
            if isinstance(data, list) and data and isinstance(data[0], dict):
                data = [f["landmarks"] for f in data]
        pts = np.asarray(data, np.float64)
    except (ValueError, KeyError, TypeError, IndexError):
        raise UserInputError("The landmarks file is neither an iBUG .pts file nor JSON with 68 (x, y) "
                             "points per face.") from None
    pts = pts.reshape(-1, NUM_LANDMARKS, 2) if pts.size and pts.size % (2 * NUM_LANDMARKS) == 0 else None
    if pts is None or not np.isfinite(pts).all():
        raise UserInputError(f"The landmarks file must hold {NUM_LANDMARKS} finite (x, y) points per face.")
    return pts / float(scale)
