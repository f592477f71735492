"""Soak test of the served app: N concurrent gradio_client callers on `/landmarks` for M minutes,
reporting per minute the requests, failures, p50/p95 latency and the server's resident memory.

    nice -n 10 python -m benchmarks.soak                                  # 40 callers, 10 min, shipped weights
    nice -n 10 python -m benchmarks.soak --callers 8 --minutes 2          # a short check
    nice -n 10 python -m benchmarks.soak --json benchmarks/results/soak.json
    python -m benchmarks.soak --url http://127.0.0.1:7860/ --pid 1234     # a running server (pid: its RSS)

Leak criterion: memory growth over the last `--tail-minutes` (5) minutes, (RSS_end - RSS_tail_start)
/ RSS_tail_start, must stay under --max-growth (5 %), and the per-minute RSS slope of the second half
must be at most half of the first half's slope or under 1 MB/min (a slope that flattens). Exit 1 when
a request failed or the memory target is missed."""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.load_test import add_server_args, caller, start_server, stop_server, wait_up

FLAT_SLOPE_MB_PER_MIN = 1.0  # a slope below this counts as flat
SAMPLE_S = 5.0  # RSS sampling period
# Client HTTP timeout: gradio_client's default (5 s reads) made 36 of 40 callers fail to connect on a
# loaded 2-core machine (the config fetch queued behind 40 inference requests); a browser waits longer.
CLIENT_TIMEOUT_S = 120.0


def rss_mb(pid: int) -> float | None:
    """Resident memory of process `pid` (VmRSS) in MB, None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def per_minute(records: list[dict], rss: list[tuple[float, float]], t0: float, minutes: int) -> list[dict]:
    """Requests, failures, latency percentiles and RSS (last sample of the minute, and its max)."""
    rows = []
    for m in range(minutes):
        lo, hi = t0 + 60 * m, t0 + 60 * (m + 1)
        rs = [r for r in records if lo <= r["t"] < hi]
        lat = np.array([r["latency"] for r in rs if r["ok"]]) * 1000.0
        mem = [v for t, v in rss if lo <= t < hi + 1e-6]
        rows.append({"minute": m + 1, "requests": len(rs), "failed": sum(not r["ok"] for r in rs),
                     "p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
                     "p95_ms": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
                     "rss_mb": round(mem[-1], 1) if mem else None, "rss_max_mb": round(max(mem), 1) if mem else None})
    return rows


def memory_verdict(rows: list[dict], idle_mb: float | None, tail: int, max_growth: float) -> dict:
    """Growth over the last `tail` minutes and the RSS slope of each half of the run (MB/min)."""
    mem = [r["rss_mb"] for r in rows if r["rss_mb"] is not None]
    out = {"idle_rss_mb": idle_mb, "final_rss_mb": mem[-1] if mem else None}
    if len(mem) < tail + 1:
        out["verdict"] = "too short for the tail criterion"
        return out
    start = mem[-tail - 1]
    growth = (mem[-1] - start) / start
    half = len(mem) // 2
    slope = lambda ys: float(np.polyfit(np.arange(len(ys)), ys, 1)[0]) if len(ys) > 1 else 0.0  # noqa: E731
    s1, s2 = slope(mem[:half + 1]), slope(mem[half:])
    flattens = s2 <= FLAT_SLOPE_MB_PER_MIN or s2 <= 0.5 * s1
    out.update({"tail_minutes": tail, "tail_growth": round(growth, 4), "slope_first_half_mb_per_min": round(s1, 2),
                "slope_second_half_mb_per_min": round(s2, 2), "slope_flattens": flattens,
                "verdict": "ok" if growth < max_growth and flattens else "possible leak"})
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="soak this running server instead of starting one")
    ap.add_argument("--pid", type=int, help="with --url: the server's process id (for its memory)")
    ap.add_argument("--callers", type=int, default=40)
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--tail-minutes", type=int, default=5)
    ap.add_argument("--max-growth", type=float, default=0.05)
    add_server_args(ap)
    ap.add_argument("--client-timeout", type=float, default=CLIENT_TIMEOUT_S, help="client HTTP timeout (s)")
    ap.add_argument("--json", default=None, help="write the results here (default: print only)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` still stops the server it started
    if args.callers < 1 or args.minutes < 1:
        raise SystemExit("--callers and --minutes must be positive")
    proc, url, pid = None, args.url, args.pid
    records: list[dict] = []
    rss: list[tuple[float, float]] = []
    stop = threading.Event()
    try:
        if url is None:
            proc, url = start_server(args)
            pid = proc.pid
            print(f"starting {url} (launch_app.py, pid {pid}) ...", flush=True)
        url = url.rstrip("/") + "/"
        wait_up(url, proc, args.startup_timeout)
        time.sleep(5.0)
        idle = rss_mb(pid) if pid else None
        print(f"server idle RSS {idle} MB", flush=True)

        def sample():
            while not stop.is_set():
                v = rss_mb(pid) if pid else None
                if v is not None:
                    rss.append((time.time(), v))
                stop.wait(SAMPLE_S)

        lock, start_evt, deadline = threading.Lock(), threading.Event(), {"t": float("inf")}
        threads = [threading.Thread(target=caller, args=(url, args.image, deadline, records, lock, start_evt,
                                                         args.client_timeout), daemon=True)
                   for _ in range(args.callers)]
        for th in threads:
            th.start()
        time.sleep(min(10.0, 0.25 * args.callers))  # clients fetch the config
        t0 = time.time()
        deadline["t"] = t0 + 60 * args.minutes
        threading.Thread(target=sample, daemon=True).start()
        print(f"{args.callers} callers for {args.minutes} min against {url}", flush=True)
        start_evt.set()
        for m in range(args.minutes):
            time.sleep(max(0.0, t0 + 60 * (m + 1) - time.time()))
            with lock:
                row = per_minute(list(records), list(rss), t0, m + 1)[-1]
            print(f"minute {row['minute']:2d} (requests completed so far): {row['requests']} requests, {row['failed']} failed, p50 "
                  f"{row['p50_ms']} ms, p95 {row['p95_ms']} ms, server RSS {row['rss_mb']} MB", flush=True)
        for th in threads:
            th.join(timeout=120)
        stop.set()
    finally:
        stop.set()
        stop_server(proc)
    rows = per_minute(records, rss, t0, args.minutes)
    mem = memory_verdict(rows, idle, args.tail_minutes, args.max_growth)
    failed = [r for r in records if not r["ok"]]
    errors: dict[str, int] = {}
    for r in failed:
        errors[r.get("error", "?")] = errors.get(r.get("error", "?"), 0) + 1
    lat = np.array([r["latency"] for r in records if r["ok"]]) * 1000.0
    summary = {"callers": args.callers, "minutes": args.minutes, "requests": len(records), "failed": len(failed),
               "connect_failed": sum(r.get("error", "").startswith("connect:") for r in failed),
               "client_timeout_s": args.client_timeout,
               "p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
               "p95_ms": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
               "per_minute": rows, "memory": mem, "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:10]),
               "server": "local launch_app.py" if args.url is None else args.url,
               "weights": args.weights or "launch_app default (shipped)", "image": Path(args.image).name,
               "host": platform.node(), "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"total {summary['requests']} requests, {summary['failed']} failed, p50 {summary['p50_ms']} ms, "
          f"p95 {summary['p95_ms']} ms")
    print("memory: " + json.dumps(mem))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=1))
        print(f"wrote {out}")
    ok = summary["failed"] == 0 and summary["requests"] > 0 and mem.get("verdict") != "possible leak"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
