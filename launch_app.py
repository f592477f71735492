"""Start the face-alignment Gradio app (also the Hugging Face Spaces entry point).

    python launch_app.py                       # http://127.0.0.1:7860
    python launch_app.py --host 0.0.0.0 --port 7860
    python launch_app.py --weights runs/mine/best.safetensors   # your own model (the FC baseline stays)
    python launch_app.py --webcam-weights weights/sdfl_fast.safetensors   # fast webcam on a slow CPU

The models load once at start; missing or broken weights print a message and exit with 2.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def parse_args(argv=None) -> argparse.Namespace:
    from app.ui import (CONCURRENCY, MAX_FILE_SIZE, MAX_PIXELS, QUEUE_MAX, RESULTS_DIR, STREAM_TIME_LIMIT,
                        WEBCAM_SLOTS)
    from core.checkpoint import DEFAULT_WEIGHTS, FAST_WEIGHTS, FC_WEIGHTS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                    help="interface to listen on (0.0.0.0 for all; default $GRADIO_SERVER_NAME or 127.0.0.1)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                    help="default $GRADIO_SERVER_PORT or 7860")
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                    help="the app's model: photos, webcam, API, occlusion demo (<stem>.safetensors + .json; "
                         "default: the flagship, core.checkpoint.DEFAULT_WEIGHTS)")
    ap.add_argument("--fc-weights", default=str(FC_WEIGHTS), help="FC baseline for the occlusion tab")
    ap.add_argument("--accurate-weights", default="",
                    help="a second photo model the upload tab can switch to (default: none)")
    ap.add_argument("--webcam-weights", default=os.environ.get("SDFL_WEBCAM_WEIGHTS", ""),
                    help=f"webcam model ('' = --weights; env SDFL_WEBCAM_WEIGHTS, e.g. on a Space); "
                         f"{FAST_WEIGHTS.name} is the fast 64 px model for slow CPUs")
    ap.add_argument("--backend", default="auto", choices=["auto", "onnx", "torch"],
                    help="auto: ONNX Runtime when <stem>.onnx exists next to the weights, else torch")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0 ...")
    ap.add_argument("--detector", default="mediapipe", choices=["mediapipe", "haar"])
    ap.add_argument("--threads", type=int, default=0, help="inference threads (0 = library default)")
    ap.add_argument("--max-faces", type=int, default=32, help="faces per photo, most confident first (default 32; "
                    "the JSON says \"truncated\": true when faces were left out)")
    ap.add_argument("--webcam-precision", default="auto", choices=["auto", "fp32", "int8"],
                    help="webcam model: auto = int8 (<stem>.int8.onnx) on a CPU when it exists, else fp32")
    ap.add_argument("--concurrency", type=int, default=CONCURRENCY, help="requests processed at once")
    ap.add_argument("--queue-size", type=int, default=QUEUE_MAX, help="requests waiting at most")
    ap.add_argument("--webcam-slots", type=int, default=WEBCAM_SLOTS, help="simultaneous webcam streams")
    ap.add_argument("--stream-time-limit", type=int, default=STREAM_TIME_LIMIT,
                    help="seconds a webcam stream may run before the user restarts it")
    ap.add_argument("--max-file-size", default=MAX_FILE_SIZE, help="upload limit, e.g. 25mb")
    ap.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="largest image accepted (pixels)")
    ap.add_argument("--results", default=str(RESULTS_DIR), help="folder of benchmark result JSON files")
    ap.add_argument("--quiet", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from app.ui import build_demo, launch, load_models, missing_weights
    from core.checkpoint import CheckpointError

    missing = missing_weights(args.weights, args.fc_weights, args.accurate_weights, args.webcam_weights)
    if missing:
        print("error: model weights not found:\n  " + "\n  ".join(missing) + "\n"
              "Train them (see docs/EXPERIMENTS.md), copy them into weights/, or pass --weights / --fc-weights / "
              "--accurate-weights / --webcam-weights "
              "with the path of a <stem>.safetensors file whose <stem>.json sits beside it.", file=sys.stderr)
        return 2
    try:
        models = load_models(args.weights, args.fc_weights, accurate_weights=args.accurate_weights or None,
                             webcam_weights=args.webcam_weights or None,
                             backend=args.backend, device=args.device,
                             detector=args.detector, threads=args.threads, webcam_slots=args.webcam_slots,
                             webcam_precision=args.webcam_precision, max_faces=args.max_faces)
    except (CheckpointError, ValueError, OSError, RuntimeError) as e:
        print(f"error: could not load the models: {e}", file=sys.stderr)
        return 2
    demo = build_demo(models=models, max_pixels=args.max_pixels, results_dir=args.results,
                      stream_time_limit=args.stream_time_limit, concurrency=args.concurrency,
                      queue_max=args.queue_size)
    loaded = ", ".join(w for w in (args.weights, args.fc_weights, args.accurate_weights, args.webcam_weights) if w)
    print(f"models loaded on {models.device}: {loaded}", flush=True)
    launch(demo, args.host, args.port, max_file_size=args.max_file_size, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
