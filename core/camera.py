"""What a webcam or a phone does to a face before the model sees it: too little light made up by gain,
sensor noise, JPEG compression. One function draws the degradation; training (`augment.camera`) and the
seeded "camera" protocol (core.protocols, `core.evaluate --camera SEED`) use it with different ranges.

    low light:  y = round(g x + n_read) / g,  g ~ U(gain) (exposure), n_read ~ N(0, READ_NOISE^2)
                (the 8-bit quantisation at low exposure and the amplified read noise are what gain leaves)
    noise:      y = x + N(0, sigma^2 (1 + x / 255)),  sigma ~ U(noise)   (read + shot noise, grey levels)
    JPEG:       encode / decode at a quality ~ U(quality)

Applied in that order to an RGB uint8 image (sensor, then the encoder)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

READ_NOISE = 1.5  # grey levels at the sensor, before gain


@dataclass(frozen=True)
class CameraRanges:
    low_light: float  # probability of an under-exposed frame
    gain: tuple[float, float]  # exposure factor of those frames
    noise: tuple[float, float]  # sensor noise sigma, grey levels
    quality: tuple[int, int]  # JPEG quality


# The protocol (reporting): every face gets noise and JPEG, half of them low light; dim webcam frames.
PROTOCOL = CameraRanges(low_light=0.5, gain=(0.1, 0.3), noise=(3.0, 12.0), quality=(15, 50))
# Training (`augment.camera`): wider, so that the model does not learn the protocol's draw.
TRAINING = CameraRanges(low_light=0.4, gain=(0.08, 0.5), noise=(0.0, 15.0), quality=(10, 90))


def low_light(img: np.ndarray, gain: float, rng: np.random.Generator) -> np.ndarray:
    """Exposure x gain, read noise, 8-bit quantisation, then the camera's gain back to x 1."""
    dim = np.round(np.clip(img * gain + rng.normal(0, READ_NOISE, img.shape), 0, 255))
    return np.clip(dim / gain, 0, 255).astype(np.uint8)


def sensor_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose variance grows with the signal (read + shot noise)."""
    if sigma <= 0:
        return img
    x = img.astype(np.float32)
    return np.clip(x + rng.normal(0, 1, img.shape) * sigma * np.sqrt(1 + x / 255), 0, 255).round().astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


@dataclass(frozen=True)
class Camera:
    """One camera's settings: exposure gain (None: enough light), noise sigma, JPEG quality."""
    gain: float | None
    noise: float
    quality: int

    @classmethod
    def draw(cls, rng: np.random.Generator, ranges: CameraRanges = PROTOCOL) -> "Camera":
        gain = rng.uniform(*ranges.gain) if rng.random() < ranges.low_light else None
        return cls(gain, rng.uniform(*ranges.noise), int(rng.integers(ranges.quality[0], ranges.quality[1] + 1)))

    def frame(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The image as this camera delivers it (rng: the frame's noise)."""
        out = img if self.gain is None else low_light(img, self.gain, rng)
        return jpeg(sensor_noise(out, self.noise, rng), self.quality)


def degrade(img: np.ndarray, rng: np.random.Generator, ranges: CameraRanges = PROTOCOL) -> np.ndarray:
    """One draw of the camera's degradations (module docstring) on an RGB uint8 image of any size (a new
    camera per image; Camera.draw once and Camera.frame per frame for a video)."""
    out = img
    if rng.random() < ranges.low_light:
        out = low_light(out, rng.uniform(*ranges.gain), rng)
    out = sensor_noise(out, rng.uniform(*ranges.noise), rng)
    return jpeg(out, int(rng.integers(ranges.quality[0], ranges.quality[1] + 1)))


def degrade_at(img: np.ndarray, rng: np.random.Generator, ranges: CameraRanges, side: int) -> np.ndarray:
    """degrade() as the camera saw the face: a square image smaller than `side` is enlarged to it first
    and shrunk back after (INTER_AREA), so its noise and JPEG blocks are a webcam's, not the small crop's."""
    size = img.shape[0]
    if side <= size:
        return degrade(img, rng, ranges)
    big = cv2.resize(img, (side, side), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(degrade(big, rng, ranges), (size, size), interpolation=cv2.INTER_AREA)
