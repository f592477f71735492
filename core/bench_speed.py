"""Speed benchmark: landmark model per face (torch / ONNX Runtime, 1 thread / all threads, batch
1 / 8), detector per 640x480 frame, end-to-end per frame (image mode and video mode), and dlib's
68-point shape predictor when dlib is importable.

    python -m core.bench_speed --json OUT.json [--runs 50] [--weights W]
    python -m core.bench_speed --json OUT.json --device cuda [--weights W ...]   # GPU: model per face only

Medians (ms) over `runs` timed calls after WARMUP untimed ones. Without --weights it uses
core.checkpoint.DEFAULT_WEIGHTS, or, before that exists, a randomly initialised graph-head model
(ModelConfig defaults: the compute of configs/sdfl_graph.yaml). The test frame is the public-domain NASA
astronaut photo (app/examples/astronaut.jpg) scaled into a 640x480 frame (face ~180 px)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

WARMUP = 5
FRAME_SIZE = (640, 480)
FACE_IMAGE = Path(__file__).resolve().parent.parent / "app" / "examples" / "astronaut.jpg"
VIDEO_STEP_PX = 2  # video frames: the photo shifted by this much per frame, back and forth
VIDEO_CYCLE = 20


def timed(fn, runs: int, warmup: int = WARMUP) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def interleaved(fns: dict, rounds: int, runs: int, warmup: int = WARMUP) -> dict[str, list[float]]:
    """Median ms of each callable per round, the callables timed in turn within every round (so a
    host's slow spell falls on all of them): {name: [round medians]}."""
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(float(np.median(timed(fn, runs, warmup))))
    return times


def summary(ms: list[float], per: int = 1) -> dict:
    return {"median_ms": round(statistics.median(ms) / per, 3), "mean_ms": round(statistics.fmean(ms) / per, 3),
            "p90_ms": round(float(np.percentile(ms, 90)) / per, 3), "runs": len(ms)}


def make_frame() -> np.ndarray:
    from .images import load_image

    face = load_image(FACE_IMAGE)
    w, h = FRAME_SIZE
    frame = np.full((h, w, 3), 90, np.uint8)
    side = h - 40
    frame[20:20 + side, (w - side) // 2:(w + side) // 2] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    return frame


def video_frames(frame: np.ndarray) -> list[np.ndarray]:
    h, w = frame.shape[:2]
    shifts = [VIDEO_STEP_PX * min(i, VIDEO_CYCLE - i) for i in range(VIDEO_CYCLE)]
    return [cv2.warpAffine(frame, np.float64([[1, 0, s], [0, 1, 0]]), (w, h), borderValue=(90, 90, 90)) for s in shifts]


def random_default_model(folder: Path) -> Path:
    """A randomly initialised graph-head model (ModelConfig defaults), saved in the shipped format."""
    import torch

    from .checkpoint import save_weights
    from .config import ModelConfig
    from .landmarks import CROP_SCALE
    from .models import build_model

    torch.manual_seed(0)
    n = 68
    nb = np.zeros((n, n), np.float32)
    for i in range(n):
        nb[i, [i, (i + 1) % n, (i - 1) % n, (i + 2) % n]] = 1  # k = 3 neighbours + self
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 0.5 / CROP_SCALE  # landmark box = crop / CROP_SCALE: stable crops when tracking in video mode
    mean = np.stack([0.5 + r * np.cos(a), 0.5 + r * np.sin(a)], 1).astype(np.float32)
    model = build_model(ModelConfig(pretrained=False), nb, mean).eval()
    path = folder / "random_default.safetensors"
    save_weights(path, model, {"note": "random init, default ModelConfig (benchmark only)"})
    return path


def machine() -> dict:
    from .runners import cpu_name

    info = {"cpu": cpu_name(), "logical_cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["load_average_start"] = [round(v, 2) for v in os.getloadavg()]
    import onnxruntime as ort
    import torch

    info.update(torch=torch.__version__, onnxruntime=ort.__version__,
                ort_available_providers=ort.get_available_providers(), cv2=cv2.__version__)
    try:
        import mediapipe as mp

        info["mediapipe"] = mp.__version__
    except ImportError:
        pass
    return info


def dlib_predictor(frame: np.ndarray, box):
    """(callable running dlib's shape_predictor_68_face_landmarks (face_recognition_models) on the face in
    `box` of `frame`, the grey frame, the model's path); ImportError when dlib or the model is missing."""
    import dlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition_models
    model = face_recognition_models.pose_predictor_model_location()
    pred = dlib.shape_predictor(model)
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    rect = dlib.rectangle(*(int(round(v)) for v in box))
    return (lambda: pred(gray, rect)), gray, model


def bench_dlib(frame: np.ndarray, box, runs: int) -> dict | None:
    """dlib's 68-point shape predictor per face on the same box, and dlib's HOG detector per frame;
    {"available": False, ...} when dlib or the model file is missing."""
    try:
        run, gray, model = dlib_predictor(frame, box)
    except ImportError as e:
        return {"available": False, "reason": f"import failed: {e}"}
    import dlib

    det = dlib.get_frontal_face_detector()
    return {"available": True, "version": dlib.__version__, "model": Path(model).name,
            "shape_predictor_per_face": summary(timed(run, runs)),
            "hog_detector_per_frame": summary(timed(lambda: det(gray, 0), max(10, runs // 5), 2))}


def main(argv=None) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench_speed_"))
    try:
        return run(argv, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(argv, tmp: Path) -> int:
    ap = argparse.ArgumentParser(description="Speed benchmark of the inference pipeline.")
    ap.add_argument("--json", required=True, help="write results here")
    ap.add_argument("--runs", type=int, default=50, help="timed runs per measurement (>= 50 for the report)")
    ap.add_argument("--weights", default=None, nargs="+",
                    help="<stem>.safetensors (default: shipped weights or random init); several with --device cuda")
    ap.add_argument("--device", default="cpu",
                    help="cpu: the whole benchmark; cuda or cuda:N: the landmark model per face on that GPU")
    args = ap.parse_args(argv)
    if args.device != "cpu":
        return run_gpu(args)
    if args.weights and len(args.weights) > 1:
        ap.error("several --weights only with --device cuda")
    args.weights = args.weights[0] if args.weights else None

    import torch

    from .checkpoint import DEFAULT_WEIGHTS, load_model, read_meta
    from .export_onnx import export
    from .inference import FaceAligner
    from .runners import onnx_current, onnx_path_for
    from .shape_prior import prior_for

    all_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    weights = Path(args.weights) if args.weights else DEFAULT_WEIGHTS
    if args.weights is None and not DEFAULT_WEIGHTS.is_file():
        weights = random_default_model(tmp)
        weights_note = "random init of the graph head (no trained weights yet)"
    else:
        weights_note = "trained weights"
    if not onnx_current(weights):
        # export a private copy next to a copy of the weights (never touch weights/)
        for suffix in (".safetensors", ".json"):
            shutil.copy(weights.with_suffix(suffix), tmp / f"bench{suffix}")
        weights = tmp / "bench.safetensors"
        export(load_model(weights)[0], onnx_path_for(weights))

    res = {"machine": machine(), "weights": str(weights), "weights_note": weights_note, "runs": args.runs,
           "warmup": WARMUP, "model": {}, "detector": {}, "end_to_end": {}}
    frame = make_frame()

    # landmark model alone, per face
    rows = []
    size = None
    has_int8 = onnx_current(weights, "int8")
    if not has_int8:
        res["int8_note"] = (f"no up-to-date {onnx_path_for(weights, 'int8').name} "
                            "(python -m core.export_onnx --int8 DATA): not measured")
    configs = [("torch", "fp32"), ("onnx", "fp32")] + ([("onnx", "int8")] if has_int8 else [])
    for backend, precision in configs:
        for threads in sorted({1, all_threads}):
            fa = FaceAligner(weights, backend=backend, detector="none", threads=threads, precision=precision,
                             shape_prior=False)  # the model alone; the prior is timed below
            size = fa.input_size
            name = backend + ("-int8" if precision == "int8" else "")
            for batch in (1, 8):
                x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
                s = summary(timed(lambda: fa.runner(x), args.runs), per=batch)
                key = f"{name}_threads{threads}_batch{batch}"
                res["model"][key] = {**s, "provider": fa.provider, "device": fa.device_name}
                rows.append((f"model per face: {name} ({fa.provider}), {threads} thr, batch {batch}", s))
    torch.set_num_threads(all_threads)

    # the shape prior's MAP fit (core.shape_prior; numpy), per face, on the model's own outputs
    prior = prior_for(weights, read_meta(weights))
    if prior is not None and fa.has_uncertainty:
        for batch in (1, 8):
            x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
            out = fa.runner(x)  # the last aligner above: the model alone
            s = summary(timed(lambda: prior.refine(out["coords"], out["cov"]), args.runs), per=batch)
            res["model"][f"shape_prior_batch{batch}"] = s
            rows.append((f"shape prior per face (numpy), batch {batch}", s))

    # detectors, per 640x480 frame
    from .detectors import HaarDetector, MediaPipeDetector

    mp_det = MediaPipeDetector()
    assert mp_det.detect(frame), "benchmark frame: no face found"
    for name, det in (("mediapipe", mp_det), ("haar", HaarDetector())):
        s = summary(timed(lambda: det.detect(frame), args.runs))
        res["detector"][name] = s
        rows.append((f"detector per 640x480 frame: {name}", s))

    # end to end, one face: ONNX Runtime with the thread count that was fastest at batch 1 above
    e2e_threads = min(sorted({1, all_threads}), key=lambda t: res["model"][f"onnx_threads{t}_batch1"]["median_ms"])
    res["end_to_end"]["onnx_threads"] = e2e_threads
    image_fa = FaceAligner(weights, backend="onnx", threads=e2e_threads)
    faces = image_fa.predict(frame)
    assert len(faces) == 1, f"benchmark frame: {len(faces)} faces"
    s = summary(timed(lambda: image_fa.predict(frame), args.runs))
    res["end_to_end"]["image_mode"] = {**s, "fps": round(1000 / s["median_ms"], 1),
                                       "note": "detect + 2 model passes"}
    rows.append((f"end to end per frame, image mode (onnx, {e2e_threads} thr)", s))
    frames = video_frames(frame)
    for precision in ["fp32"] + (["int8"] if has_int8 else []):
        video_fa = FaceAligner(weights, backend="onnx", threads=e2e_threads, video=True, precision=precision)
        it = iter(range(10 ** 9))
        calls = [0]
        detect = video_fa.detector.detect

        def counted(rgb, detect=detect, calls=calls):
            calls[0] += 1
            return detect(rgb)

        video_fa.detector.detect = counted
        n_video = max(args.runs, 2 * VIDEO_CYCLE)
        s = summary(timed(lambda: video_fa.predict(frames[next(it) % len(frames)]), n_video))
        key = "video_mode" if precision == "fp32" else "video_mode_int8"
        res["end_to_end"][key] = {**s, "fps_from_mean": round(1000 / s["mean_ms"], 1),
                                  "detector_calls_per_frame": round(calls[0] / (n_video + WARMUP), 3),
                                  "note": f"tracked, detector every {video_fa.redetect_every} frames, "
                                          f"1 model pass, One-Euro smoothing, {precision}"}
        rows.append((f"end to end per frame, video mode (onnx {precision}, {e2e_threads} thr)", s))

    # dlib, same machine and run
    dl = bench_dlib(frame, faces[0].box, args.runs)
    res["dlib"] = dl
    if dl and dl.get("available"):
        rows.append(("dlib shape_predictor_68 per face", dl["shape_predictor_per_face"]))
        rows.append(("dlib HOG detector per 640x480 frame", dl["hog_detector_per_frame"]))
        ref = dl["shape_predictor_per_face"]["median_ms"]
        res["ratio_vs_dlib_onnx_1thread_batch1"] = {
            p: round(res["model"][f"{k}_threads1_batch1"]["median_ms"] / ref, 2)
            for p, k in (("fp32", "onnx"), ("int8", "onnx-int8")) if f"{k}_threads1_batch1" in res["model"]}
        if "shape_prior_batch1" in res["model"]:  # what a face costs as FaceAligner runs it
            prior_ms = res["model"]["shape_prior_batch1"]["median_ms"]
            res["ratio_vs_dlib_onnx_1thread_batch1_with_prior"] = {
                p: round((res["model"][f"{k}_threads1_batch1"]["median_ms"] + prior_ms) / ref, 2)
                for p, k in (("fp32", "onnx"), ("int8", "onnx-int8")) if f"{k}_threads1_batch1" in res["model"]}

    if hasattr(os, "getloadavg"):
        res["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1))

    m = res["machine"]
    print(f"{m['cpu']}, {m.get('usable_cores', m['logical_cores'])} usable cores, load {m.get('load_average_start')}; "
          f"torch {m['torch']}, onnxruntime {m['onnxruntime']}; input {size}x{size}; {weights_note}")
    print(f"{'measurement':70s} {'median ms':>10s} {'p90 ms':>8s}")
    for name, s in rows:
        print(f"{name:70s} {s['median_ms']:10.2f} {s['p90_ms']:8.2f}")
    print(f"image mode: {res['end_to_end']['image_mode']['fps']} fps; video mode: "
          f"{res['end_to_end']['video_mode']['fps_from_mean']} fps (from the mean)"
          + (f", int8 {res['end_to_end']['video_mode_int8']['fps_from_mean']} fps" if has_int8 else ""))
    if "ratio_vs_dlib_onnx_1thread_batch1" in res:
        print("landmark model per face (ONNX Runtime, 1 thread, batch 1) / dlib per face: "
              + ", ".join(f"{p} {r}" for p, r in res["ratio_vs_dlib_onnx_1thread_batch1"].items())
              + "".join(f"; with the shape prior {p} {r}"
                        for p, r in res.get("ratio_vs_dlib_onnx_1thread_batch1_with_prior", {}).items()))
    elif dl is not None:
        print(f"dlib: not measured ({dl.get('reason')})")
    return 0


GPU_BATCHES = (1, 8, 64)


def run_gpu(args) -> int:
    """The landmark model per face on a GPU through FaceAligner's torch backend (input copied to the
    device, outputs back to the host, as the app does), batch 1 / 8 / 64, for each of --weights."""
    import torch

    from .checkpoint import DEFAULT_WEIGHTS
    from .inference import FaceAligner

    if not torch.cuda.is_available():
        print(f"--device {args.device}: torch sees no CUDA device", file=sys.stderr)
        return 2
    res = {"machine": {"gpu": torch.cuda.get_device_name(torch.device(args.device)), "torch": torch.__version__,
                       "cuda": torch.version.cuda, "python": platform.python_version()},
           "runs": args.runs, "warmup": WARMUP, "model": {}}
    print(f"{res['machine']['gpu']}, torch {torch.__version__} (CUDA {torch.version.cuda})")
    print(f"{'measurement':70s} {'median ms':>10s} {'p90 ms':>8s}")
    for weights in args.weights or [DEFAULT_WEIGHTS]:
        fa = FaceAligner(weights, backend="torch", device=args.device, detector="none")
        for batch in GPU_BATCHES:
            x = np.random.default_rng(0).random((batch, 3, fa.input_size, fa.input_size), dtype=np.float32)
            s = summary(timed(lambda: fa.runner(x), args.runs), per=batch)
            res["model"][f"{Path(weights).stem}_batch{batch}"] = {**s, "provider": fa.provider,
                                                                  "input_size": fa.input_size}
            print(f"{f'model per face: {Path(weights).stem} (torch fp32, {fa.provider}), batch {batch}':70s} "
                  f"{s['median_ms']:10.3f} {s['p90_ms']:8.3f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
