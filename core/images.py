"""Image loading for inference: one entry point for files, bytes, PIL images and numpy arrays that
always returns (H, W, 3) uint8 RGB or raises ValueError with a readable message.

Memory bound: one gate (open_gated) reads the size a file DECLARES in its header before any decoder
runs and refuses files above `max_pixels` (default MAX_IMAGE_PIXELS, 100 MP; callers such as the app
pass their own limit, which the refusal quotes) and files whose format or header it cannot read;
formats only OpenCV decodes (Radiance HDR, PFM, PAM, EXR) are capped at OPENCV_MAX_PIXELS. Files above
DECODE_MAX_PIXELS (24 MP) are decoded reduced by 2, 4 or 8 (JPEG DCT scaling, so the full image is
never held), and `decode_image` reports the factor so landmarks can be given in the file's pixels.
Arrays are already in memory: they are refused above MAX_IMAGE_PIXELS, and the detector works on a
downscaled copy (core.detectors.DETECT_MAX_SIDE)."""
from __future__ import annotations

import io
import re
import struct
import warnings
from pathlib import Path

import numpy as np

from .image_headers import OPENCV_FORMATS, Header, HeaderError, parse_header

MIN_IMAGE_SIDE = 16  # smaller images cannot hold a face the model can read
MAX_IMAGE_PIXELS = 100_000_000  # refuse anything larger (decompression bombs, absurd arrays)
DECODE_MAX_PIXELS = 24_000_000  # decode files larger than this reduced (factor 2, 4 or 8)
MAX_FILE_BYTES = 512 * 1024 * 1024  # refuse larger files before reading them
REDUCE_FACTORS = (1, 2, 4, 8)
# OpenCV cannot decode reduced and holds float formats at 12 bytes/pixel (a 24 MP HDR: 290 MB).
OPENCV_MAX_PIXELS = DECODE_MAX_PIXELS
PIL_EXCLUDED_FORMATS = ("EPS",)
REDUCIBLE_MODES = ("L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F")  # Pillow decodes EPS by running Ghostscript on the file
FLOAT_TOLERANCE = 1e-3  # float images may exceed [0, 1] by this much (rounding)


class ImageTooLarge(ValueError):
    """An image (declared in its file's header, or an array) of more pixels than the limit in force;
    width/height are None when only the pixel count is known."""

    def __init__(self, what: str, limit: int, width: int | None = None, height: int | None = None,
                 pixels: int | None = None):
        self.width, self.height, self.limit = width, height, int(limit)
        self.pixels = int(pixels if pixels is not None else width * height)
        size = f"{width}x{height} = " if width is not None else ""
        super().__init__(f"{what} is too large ({size}{self.pixels / 1e6:.0f} MP); the limit is {limit / 1e6:.0f} MP")


def _check_size(h: int, w: int, what: str, max_pixels: int = MAX_IMAGE_PIXELS):
    if h * w > max_pixels:
        raise ImageTooLarge(what, max_pixels, w, h)
    if h < MIN_IMAGE_SIDE or w < MIN_IMAGE_SIDE:
        raise ValueError(f"{what} is too small ({w}x{h} pixels); need at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")


def _to_uint8(a: np.ndarray, what: str) -> np.ndarray:
    """Any supported dtype -> uint8 (16-bit scaled by 1/257, floats expected in [0, 1])."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError(f"{what}: float image contains NaN or inf")
        lo, hi = float(a.min()), float(a.max())
        if lo < -FLOAT_TOLERANCE or hi > 1 + FLOAT_TOLERANCE:
            raise ValueError(f"{what}: float images must have values in [0, 1], got [{lo:g}, {hi:g}] "
                             "(pass uint8, or divide by 255)")
        return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi <= 255:
            return a.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return ((a.astype(np.int64) + 128) // 257).astype(np.uint8)
        raise ValueError(f"{what}: integer values in [{lo}, {hi}] are neither 8- nor 16-bit")
    raise ValueError(f"{what}: unsupported pixel type {a.dtype}")


def array_to_rgb(a, color: str = "rgb", what: str = "image array", max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array of uint8/uint16/bool/float in [0, 1] ->
    contiguous (H, W, 3) uint8 RGB. `color` gives the channel order of the input ("rgb" or "bgr");
    alpha is dropped."""
    if color not in ("rgb", "bgr"):
        raise ValueError(f"color must be 'rgb' or 'bgr', got {color!r}")
    a = np.asarray(a)
    if a.dtype == object:
        raise ValueError(f"{what}: not a numeric array")
    if a.size == 0:
        raise ValueError(f"{what} is empty (shape {a.shape})")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        _check_size(*a.shape, what, max_pixels)
        g = _to_uint8(a, what)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"{what}: expected shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    _check_size(a.shape[0], a.shape[1], what, max_pixels)
    a = _to_uint8(a[:, :, :3], what)
    if color == "bgr":
        a = a[:, :, ::-1]
    return np.ascontiguousarray(a)


def _pil_to_rgb(im, what: str) -> np.ndarray:
    """Loaded PIL image of any mode -> (H, W, 3) uint8 RGB (16-bit and 32-bit int modes scaled)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im)
        if a.dtype != np.uint16:
            a = np.clip(a, 0, 65535).astype(np.uint16) if a.max() > 255 else np.clip(a, 0, 255).astype(np.uint8)
        return array_to_rgb(a, what=what)
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float32)
        return array_to_rgb(a / 255.0 if a.max() > 1 + FLOAT_TOLERANCE else a, what=what)
    if im.mode != "RGB":
        im = im.convert("RGB")  # drops alpha, expands palettes, CMYK/YCbCr/L/1 -> RGB
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def _pil_formats() -> list[str]:
    """Every format Pillow opens, except EPS (its decoder runs Ghostscript on the file)."""
    from PIL import Image

    Image.init()
    return [f for f in Image.OPEN if f not in PIL_EXCLUDED_FORMATS]


def open_gated(data: bytes, what: str, max_pixels: int = MAX_IMAGE_PIXELS):
    """The decoding gate: the size the file DECLARES, read from its header (core.image_headers for
    every format OpenCV decodes, and Pillow's header-only open for the formats Pillow knows), is
    checked against max_pixels before any decoder runs. Returns (lazy PIL image, None) when Pillow
    will decode it, or (None, Header) for a format only OpenCV decodes. Raises ImageTooLarge, or
    ValueError for unknown formats and unreadable headers (never decoded blindly)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ValueError(f"{what} is empty (0 bytes)")
    try:
        hdr = parse_header(data)
    except HeaderError as e:
        raise ValueError(f"{what} is corrupt or truncated ({e})") from None
    if hdr is not None:
        _check_size(hdr.height, hdr.width, what, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=_pil_formats())  # reads the header only
    except UnidentifiedImageError:
        im = None
    except Image.DecompressionBombError as e:  # a Pillow-only format declaring > 2 x Pillow's limit
        m = re.search(r"\((\d+) pixels\)", str(e))
        raise ImageTooLarge(what, max_pixels, pixels=int(m.group(1)) if m else max_pixels + 1) from None
    except (OSError, SyntaxError, EOFError, struct.error, ValueError) as e:
        raise ValueError(f"{what} is corrupt or truncated ({e})") from None
    if im is not None:
        _check_size(im.size[1], im.size[0], what, max_pixels)
        return im, None
    if hdr is None or hdr.format not in OPENCV_FORMATS:
        raise ValueError(f"{what} is not a readable image file (unknown or unsupported format)")
    limit = min(max_pixels, OPENCV_MAX_PIXELS)
    if hdr.pixels > limit:
        raise ImageTooLarge(f"{what} ({hdr.format}, which cannot be decoded reduced)", limit, hdr.width, hdr.height)
    return None, hdr


def _decode_pil(im, what: str) -> tuple[np.ndarray, float]:
    from PIL import Image, ImageOps

    w, h = im.size
    factor = next((f for f in REDUCE_FACTORS if w * h / (f * f) <= DECODE_MAX_PIXELS), REDUCE_FACTORS[-1])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if factor > 1 and im.format == "JPEG":
                im.draft("RGB", (-(-w // factor), -(-h // factor)))  # DCT scaling: never decodes full size
            im.load()  # raises on truncated / corrupt data
            if factor > 1 and im.size == (w, h):
                if im.mode not in REDUCIBLE_MODES:  # reduce() refuses e.g. "1" and "P"
                    im = im.convert("I" if im.mode.startswith("I;16") else "RGB")
                im = im.reduce(factor)
            scale = float(round(w / im.size[0]))  # DCT scaling and reduce() both use blocks of `factor`
            im = ImageOps.exif_transpose(im)
            return _pil_to_rgb(im, what), scale
    except Image.DecompressionBombError as e:
        raise ValueError(f"{what} is too large to decode ({e})") from e
    except (OSError, SyntaxError, EOFError, struct.error) as e:
        raise ValueError(f"{what} is corrupt or truncated ({e})") from e


def _decode_opencv(data: bytes, hdr: Header, what: str) -> np.ndarray:
    """A format only OpenCV reads (Radiance HDR, PFM, PAM, EXR when enabled), already size-gated.
    Float images (HDR radiance) are scaled so the brightest value is white."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError(f"{what} is corrupt, truncated or unsupported ({hdr.format} that OpenCV cannot decode)")
    if arr.shape[:2] != (hdr.height, hdr.width):
        raise ValueError(f"{what}: decoded {arr.shape[1]}x{arr.shape[0]} differs from the header's "
                         f"{hdr.width}x{hdr.height}")
    if np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all():
        arr = np.clip(arr, 0, None) / max(1.0, float(arr.max()))
    return array_to_rgb(arr, "bgr" if arr.ndim == 3 else "rgb", what)


def _decode_bytes(data: bytes, what: str, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, float]:
    im, hdr = open_gated(data, what, max_pixels)
    if im is not None:
        return _decode_pil(im, what)
    return _decode_opencv(data, hdr, what), 1.0


def decode_image(src, color: str = "rgb", max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, float]:
    """Like load_image, plus `scale`: file pixels per returned pixel (1.0 unless a large file was
    decoded reduced). A returned pixel centre x maps to x_file = scale * (x + 0.5) - 0.5 (files are
    turned upright by their EXIF orientation first, as cv2.imread does).
    `color` applies to arrays only (files are decoded to RGB). Inputs of more than `max_pixels`
    (declared in a file's header: checked before decoding) raise ImageTooLarge quoting that limit."""
    from PIL import Image

    if isinstance(src, (str, Path)):
        p = Path(src)
        if not p.is_file():
            raise ValueError(f"image file not found: {p}")
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{p}: file too large ({size / 2**20:.0f} MiB)")
        return _decode_bytes(p.read_bytes(), str(p), max_pixels)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(src), "image data", max_pixels)
    if isinstance(src, Image.Image):
        _check_size(src.size[1], src.size[0], "PIL image", max_pixels)
        return _pil_to_rgb(src, "PIL image"), 1.0
    if isinstance(src, np.ndarray) or hasattr(src, "__array__"):
        return array_to_rgb(src, color, max_pixels=max_pixels), 1.0
    raise ValueError(f"unsupported image input of type {type(src).__name__}; pass a path, bytes, "
                     "PIL image or numpy array")


def load_image(src, color: str = "rgb", max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Path, bytes, PIL image or array -> (H, W, 3) uint8 RGB. Grayscale is expanded, alpha
    dropped, 16-bit scaled to 8-bit, float arrays taken in [0, 1]; `color` is the channel order of
    an array input ("rgb" or "bgr"). ValueError for anything that is not a usable image."""
    return decode_image(src, color, max_pixels)[0]


def fit_within(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Downscale (never upscale, INTER_AREA) so the longer side is at most max_side; returns
    (image, s) with s = working / original size (1.0 when the image already fits)."""
    import cv2

    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image, 1.0
    f = max(h, w) / max_side
    small = cv2.resize(image, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    return small, small.shape[1] / w
