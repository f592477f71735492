"""Command line: landmarks for an image, a folder of images, or a video.

    python -m core.predict IMAGE_OR_DIR_OR_VIDEO --out DIR [--weights W] [--backend auto|onnx|torch]

Per image: DIR/<stem>.json (faces: box, score, confidence, landmarks, covariance in original
pixels; "truncated": true when --max-faces left faces out) and
DIR/<stem>.annotated.jpg (points, the model's sparse graph edges, boxes). Per video:
DIR/<stem>.annotated.mp4 and DIR/<stem>.jsonl (one line per frame). Unreadable files are reported
on stderr and skipped; the exit status is 1 only when nothing could be processed."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from . import overlays
from .checkpoint import DEFAULT_WEIGHTS
from .image_faces import DEFAULT_MIN_CONFIDENCE
from .images import decode_image
from .inference import DEFAULT_MAX_FACES

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm", ".pnm",
                    ".pam", ".pfm", ".hdr", ".exr", ".jp2", ".j2k", ".ras", ".sr", ".tga", ".pcx", ".ico"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
ANNOTATION = overlays.OverlayOptions(points=True, graph=True, box=True)
JPEG_QUALITY = 92
VIDEO_FOURCC = "mp4v"


def draw_faces(rgb: np.ndarray, faces, neighbours: np.ndarray) -> np.ndarray:
    """Copy of `rgb` with each face's landmarks, sparse-graph edges (coloured by the learned
    per-image weight) and box."""
    return overlays.draw_faces(rgb, faces, neighbours, ANNOTATION)


def collect_inputs(src: Path) -> list[Path]:
    if src.is_dir():
        known = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
        return sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in known)
    return [src]


def _out_stem(p: Path, used: set[str]) -> str:
    stem = p.stem
    if stem in used:
        stem = f"{p.stem}_{p.suffix.lstrip('.').lower()}"
    used.add(stem)
    return stem


def process_image(aligner, path: Path, out_dir: Path, stem: str, annotate: bool = True) -> int:
    rgb, scale = decode_image(path)
    faces = aligner.predict(rgb)
    h, w = rgb.shape[:2]
    info = {"image": str(path), "width": round(w * scale), "height": round(h * scale), "weights": str(aligner.weights),
            "backend": aligner.backend, "provider": aligner.provider,
            "faces": [f.to_file_pixels(scale).to_dict() for f in faces]}
    if getattr(faces, "truncated", False):
        info["truncated"] = True
    (out_dir / f"{stem}.json").write_text(json.dumps(info))
    if annotate:
        img = draw_faces(rgb, faces, aligner.neighbours)
        cv2.imwrite(str(out_dir / f"{stem}.annotated.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return len(faces)


def process_video(aligner, path: Path, out_dir: Path, stem: str, max_frames: int = 0, annotate: bool = True) -> int:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: not a readable video")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and 1 <= fps <= 240 else 30.0
    aligner.reset()
    aligner.fps = fps
    writer = None
    n = 0
    try:
        with (out_dir / f"{stem}.jsonl").open("w") as jf:
            while not max_frames or n < max_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                t = n / fps
                faces = aligner.predict(bgr, color="bgr", timestamp=t)
                jf.write(json.dumps({"frame": n, "time": round(t, 4), "faces": [f.to_dict() for f in faces]}) + "\n")
                if annotate:
                    if writer is None:
                        h, w = bgr.shape[:2]
                        writer = cv2.VideoWriter(str(out_dir / f"{stem}.annotated.mp4"),
                                                 cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps, (w, h))
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    writer.write(cv2.cvtColor(draw_faces(rgb, faces, aligner.neighbours), cv2.COLOR_RGB2BGR))
                n += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if n == 0:
        raise ValueError(f"{path}: no frames could be decoded")
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="68-point landmarks for images, folders or videos.")
    ap.add_argument("input", help="image file, folder of images/videos, or video file")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--weights", default=None,
                    help=f"<stem>.safetensors (default: {DEFAULT_WEIGHTS.relative_to(DEFAULT_WEIGHTS.parent.parent)})")
    ap.add_argument("--backend", default="auto", choices=["auto", "onnx", "torch"])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--detector", default="mediapipe", choices=["mediapipe", "haar"])
    ap.add_argument("--threads", type=int, default=0, help="inference threads (0 = default)")
    ap.add_argument("--max-faces", type=int, default=DEFAULT_MAX_FACES,
                    help=f"at most N faces per image, most confident first (default {DEFAULT_MAX_FACES}); the JSON "
                    "says \"truncated\": true when faces were left out")
    ap.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE,
                    help=f"drop faces whose confidence is below this (default {DEFAULT_MIN_CONFIDENCE}; 0 keeps all)")
    ap.add_argument("--max-frames", type=int, default=0, help="video: stop after N frames (0 = all)")
    ap.add_argument("--no-annotate", action="store_true", help="write JSON only")
    ap.add_argument("--mirror", action="store_true", help="mirror ensemble: each crop also mirrored, answers averaged "
                                                          "(twice the model time, slightly more accurate)")
    args = ap.parse_args(argv)

    from .inference import FaceAligner

    src = Path(args.input)
    if not src.exists():
        print(f"error: {src} does not exist", file=sys.stderr)
        return 2
    inputs = collect_inputs(src)
    if not inputs:
        print(f"error: no image or video files in {src}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    kw = dict(weights=args.weights, backend=args.backend, device=args.device, detector=args.detector,
              threads=args.threads, max_faces=args.max_faces, min_confidence=args.min_confidence, mirror=args.mirror)
    try:
        image_aligner = FaceAligner(**kw)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"model {image_aligner.weights.name}: {image_aligner.backend} on {image_aligner.provider} "
          f"({image_aligner.device_name})", file=sys.stderr)
    video_aligner = None
    ok = bad = 0
    used: set[str] = set()
    for p in inputs:
        stem = _out_stem(p, used)
        try:
            if p.suffix.lower() in VIDEO_EXTENSIONS:
                video_aligner = video_aligner or FaceAligner(**kw, video=True)
                n = process_video(video_aligner, p, out_dir, stem, args.max_frames, not args.no_annotate)
                print(f"{p}: {n} frames", file=sys.stderr)
            else:
                n = process_image(image_aligner, p, out_dir, stem, not args.no_annotate)
                print(f"{p}: {n} face(s)", file=sys.stderr)
            ok += 1
        except (ValueError, OSError) as e:
            bad += 1
            print(f"skipped {p}: {e}", file=sys.stderr)
    print(f"done: {ok} processed, {bad} skipped -> {out_dir}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
