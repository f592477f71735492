"""Load test of the served app's JSON API (`/landmarks`) with concurrent gradio_client callers.

    nice python -m benchmarks.load_test                          # starts launch_app.py locally
    nice python -m benchmarks.load_test --callers 20 --seconds 60 --json benchmarks/load_test.json
    nice python -m benchmarks.load_test --url http://127.0.0.1:7860/   # an already running server

Each caller is its own gradio_client.Client calling /landmarks on the example photo in a loop until
the time is up. Prints failed requests (with their messages), p50/p95/p99 latency as the client
sees it (queueing included), the server-side model latency, and throughput; writes it all as JSON
only when --json names a file (the tracked benchmarks/load_test.json is never overwritten by default).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = ROOT / "app" / "examples" / "astronaut.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen | None, timeout: float) -> None:
    t_end = time.time() + timeout
    while time.time() < t_end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before it was up")
        try:
            with urllib.request.urlopen(url + "config", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1.0)
    raise RuntimeError(f"server at {url} not up after {timeout:.0f} s")


def stop_server(proc: subprocess.Popen | None) -> None:
    """Terminate a server started by start_server (kill it after 30 s); None: nothing to stop."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_server(args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, str(ROOT / "launch_app.py"), "--host", "127.0.0.1", "--port", str(port), "--quiet"]
    if args.weights:
        cmd += ["--weights", args.weights]
    if args.fc_weights:
        cmd += ["--fc-weights", args.fc_weights]
    if args.concurrency:
        cmd += ["--concurrency", str(args.concurrency)]
    cmd += ["--webcam-slots", "1", "--queue-size", str(max(64, 2 * args.callers))]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(args.server_log, "w") if args.server_log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}/"


def caller(url: str, image: str, deadline: dict, records: list, lock: threading.Lock, start_evt: threading.Event,
           timeout: float | None = None):
    """Call /landmarks in a loop from start_evt until deadline["t"] (set when the clock starts).
    `timeout`: the client's HTTP timeout in seconds (None: gradio_client's own, a few seconds)."""
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False, httpx_kwargs={"timeout": timeout} if timeout else None)
    except Exception as e:  # noqa: BLE001 - counted as a failure
        with lock:
            records.append({"ok": False, "t": 0.0, "latency": 0.0, "error": f"connect: {type(e).__name__}: {e}"})
        return
    start_evt.wait()
    while time.time() < deadline["t"]:
        t0 = time.perf_counter()
        rec = {"t": time.time()}
        try:
            res = client.predict(handle_file(image), api_name="/landmarks")
            rec.update(ok=True, faces=len(res.get("faces", [])), server_ms=res.get("latency_ms"))
        except Exception as e:  # noqa: BLE001 - every failure is reported
            rec.update(ok=False, error=f"{type(e).__name__}: {str(e)[:200]}")
        rec["latency"] = time.perf_counter() - t0
        with lock:
            records.append(rec)
    try:
        client.close()
    except Exception:  # noqa: BLE001
        pass


def summarize(records: list[dict], elapsed: float, callers: int) -> dict:
    ok = [r for r in records if r["ok"]]
    bad = [r for r in records if not r["ok"]]
    lat = np.array([r["latency"] for r in ok]) * 1000.0
    srv = np.array([r["server_ms"] for r in ok if r.get("server_ms") is not None], float)

    def pct(a, q):
        return round(float(np.percentile(a, q)), 1) if a.size else None

    return {
        "callers": callers, "seconds": round(elapsed, 1), "requests": len(records), "succeeded": len(ok),
        "failed": len(bad), "throughput_rps": round(len(ok) / elapsed, 3) if elapsed > 0 else None,
        "latency_ms": {"p50": pct(lat, 50), "p95": pct(lat, 95), "p99": pct(lat, 99),
                       "mean": round(float(lat.mean()), 1) if lat.size else None,
                       "max": round(float(lat.max()), 1) if lat.size else None},
        "server_model_ms": {"p50": pct(srv, 50), "p95": pct(srv, 95)},
        "faces_per_request": dict(Counter(r.get("faces") for r in ok)),
        "errors": dict(Counter(r["error"] for r in bad).most_common(10)),
    }


def add_server_args(ap: argparse.ArgumentParser) -> None:
    """The request image and the options of the local server a load benchmark starts (no --url)."""
    ap.add_argument("--image", default=str(DEFAULT_IMAGE))
    ap.add_argument("--weights", help="graph weights for the local server (default: launch_app's)")
    ap.add_argument("--fc-weights", help="FC weights for the local server")
    ap.add_argument("--concurrency", type=int, default=0, help="server --concurrency (0: launch_app's default)")
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    ap.add_argument("--server-log", help="write the local server's output here")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="test this running server instead of starting one")
    ap.add_argument("--callers", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    add_server_args(ap)
    ap.add_argument("--json", "--out", dest="json", default=None,
                    help="write the JSON summary here (default: print only)")
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.callers < 1 or args.seconds <= 0:
        ap.error("--callers and --seconds must be positive")
    if not Path(args.image).is_file():
        ap.error(f"image not found: {args.image}")

    proc = None
    url = args.url
    try:
        if url is None:
            proc, url = start_server(args)
            print(f"starting {url} (launch_app.py, pid {proc.pid}) ...", flush=True)
        url = url.rstrip("/") + "/"
        wait_up(url, proc, args.startup_timeout)
        records: list[dict] = []
        lock = threading.Lock()
        start_evt = threading.Event()
        deadline_box = {"t": float("inf")}
        threads = [threading.Thread(target=caller, args=(url, args.image, deadline_box, records, lock, start_evt),
                                    daemon=True) for _ in range(args.callers)]
        for th in threads:
            th.start()
        time.sleep(min(5.0, 0.2 * args.callers))  # let the clients connect (config fetch)
        t0 = time.time()
        deadline_box["t"] = t0 + args.seconds
        print(f"{args.callers} callers for {args.seconds:.0f} s against {url}", flush=True)
        start_evt.set()
        for th in threads:
            th.join(timeout=args.seconds + 600)
        elapsed = max(time.time() - t0, 1e-9)
        summary = summarize(records, elapsed, args.callers)
    finally:
        stop_server(proc)
    summary.update({"url": url if args.url else "local launch_app.py", "image": Path(args.image).name,
                    "host": platform.node(), "cpus": os.cpu_count(),
                    "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"requests {summary['requests']}  ok {summary['succeeded']}  failed {summary['failed']}")
    for msg, n in summary["errors"].items():
        print(f"  failed x{n}: {msg}")
    lat = summary["latency_ms"]
    print(f"latency p50 {lat['p50']} ms  p95 {lat['p95']} ms  p99 {lat['p99']} ms  (server model p50 "
          f"{summary['server_model_ms']['p50']} ms)")
    print(f"throughput {summary['throughput_rps']} requests/s")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=1))
        print(f"wrote {out}")
    return 0 if summary["failed"] == 0 and summary["succeeded"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
