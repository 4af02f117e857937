"""HTTP load benchmark: complements and completion under gunicorn, beside a trivial
Flask JSON endpoint served the same way in the same run (the ratio is what the engine
costs over the web stack).

Every server binds 127.0.0.1 only. Each measurement is bounded (``--duration``
seconds, at most ``--max-requests`` requests). Two modes per endpoint:

- ``paced``: an open loop at ``--rate`` requests/second; latency counts from the
  *scheduled* send time, so a stalled server cannot hide its queue (no coordinated
  omission);
- ``max``: ``--concurrency`` clients back to back: the throughput ceiling.

The load generator is Python on the same machine, so figures are a lower bound on
what the server does; run it with ``nice`` on a shared machine and report the machine.

Examples
--------
::

    python benchmarks/api_load.py --bundle bundles/demo --workers 2 --duration 10
    python benchmarks/api_load.py --trivial-only          # the web stack alone
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def trivial_app():
    """The baseline: one Flask JSON endpoint, no engine, no hooks."""
    from flask import Flask, jsonify
    app = Flask("trivial")

    @app.get("/ping")
    def ping():
        return jsonify({"ok": True, "request_id": "x"})

    return app


def start_server(kind: str, workers: int, config: dict | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if kind == "api":
        cmd = [sys.executable, "-m", "api.server", json.dumps(config or {}), HOST, str(port),
               str(workers)]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-trivial", str(port),
               "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"{kind} server did not start")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Client:
    """One keep-alive connection; reconnects after an error."""

    def __init__(self, port: int):
        self.port = port
        self.conn = None

    def request(self, method: str, path: str, body: bytes | None) -> int:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
            try:
                headers = {"Content-Type": "application/json"} if body else {}
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                r.read()
                return r.status
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    return -1
        return -1


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def run_load(port: int, method: str, path, body, *, duration: float,
             concurrency: int, rate: float | None, max_requests: int) -> dict:
    """``path`` and ``body`` may be lists: requests cycle through them (many items,
    as a shop's pages ask, rather than one item the caches learn by heart)."""
    paths = path if isinstance(path, list) else [path]
    bodies = body if isinstance(body, list) else [body] * len(paths)
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    t_start = time.perf_counter() + 0.2
    per_thread = max_requests // concurrency

    def worker(i: int):
        c = Client(port)
        c.request(method, paths[i % len(paths)], bodies[i % len(paths)])  # not counted
        mine, bad = [], 0
        n = 0
        interval = concurrency / rate if rate else 0.0
        next_t = t_start + (i * interval / concurrency if rate else 0.0)
        while n < per_thread:
            if rate:
                now = time.perf_counter()
                if next_t > now:
                    time.sleep(next_t - now)
                sched = next_t
                next_t += interval
            else:
                sched = time.perf_counter()
            if sched - t_start > duration:
                break
            j = (i + n * concurrency) % len(paths)
            status = c.request(method, paths[j], bodies[j])
            mine.append(time.perf_counter() - sched)   # from the scheduled time
            bad += status != 200
            n += 1
        with lock:
            lat.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t_start
    return {"requests": len(lat), "errors": errors[0], "seconds": round(elapsed, 2),
            "rps": round(len(lat) / elapsed, 1),
            "p50_ms": round(percentile(lat, 50) * 1000, 2),
            "p99_ms": round(percentile(lat, 99) * 1000, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", help="bundle to serve (omit with --trivial-only)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    p.add_argument("--rate", type=float, default=200.0, help="paced requests/second")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-requests", type=int, default=20_000)
    p.add_argument("--item", help="one item id for every request (default: --sample "
                   "random items of the apparel slots, cycled)")
    p.add_argument("--sample", type=int, default=500, help="items requests cycle through")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of the same load "
                   "before each measurement, not counted (page cache, lazy loads)")
    p.add_argument("--trivial-only", action="store_true")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "api_load.json"))
    p.add_argument("--serve-trivial", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.serve_trivial:
        sys.path.insert(0, str(ROOT))
        from api.server import DEFAULT_THREADS, gunicorn_application
        gunicorn_application(trivial_app, {
            "bind": f"{HOST}:{args.serve_trivial}", "workers": args.workers,
            "worker_class": "gthread", "threads": DEFAULT_THREADS, "preload_app": True,
            "keepalive": 5, "accesslog": None, "errorlog": "-",
            "loglevel": "warning"}).run()
        return 0

    targets = []
    procs = []
    try:
        proc, tport = start_server("trivial", args.workers)
        procs.append(proc)
        targets.append(("trivial /ping", tport, "GET", "/ping", None))
        if not args.trivial_only:
            if not args.bundle:
                p.error("--bundle is required (or --trivial-only)")
            sys.path.insert(0, str(ROOT))
            import pandas as pd
            cat = pd.read_parquet(Path(args.bundle) / "catalog.parquet",
                                  columns=["item_id", "category"])
            if args.item:
                items = [args.item]
            else:
                apparel = cat[cat["category"].isin(["top", "bottom", "dress", "outerwear"])]
                items = apparel["item_id"].sample(min(args.sample, len(apparel)),
                                                  random_state=0).astype(str).tolist()
            n_items = len(cat)
            proc, aport = start_server("api", args.workers, {
                "BUNDLE": str(args.bundle), "WATCH_INTERVAL": 1.0,
                "DATA_DIR": str(Path(args.out).parent / "serving")})
            procs.append(proc)
            targets.append(("complements", aport, "GET",
                            [f"/v1/items/{it}/complements?k=5" for it in items], None))
            targets.append(("complete", aport, "POST", ["/v1/outfits/complete"] * len(items),
                            [json.dumps({"items": [it], "n": 3}).encode() for it in items]))
        results = {}
        for name, port, method, path, body in targets:
            for mode, rate in (("paced", args.rate), ("max", None)):
                if args.warmup > 0:
                    run_load(port, method, path, body, duration=args.warmup,
                             concurrency=args.concurrency, rate=rate,
                             max_requests=args.max_requests)
                r = run_load(port, method, path, body, duration=args.duration,
                             concurrency=args.concurrency, rate=rate,
                             max_requests=args.max_requests)
                results[f"{name} {mode}"] = r
                print(f"{name:<16}{mode:<7}{r['rps']:>9.1f} req/s  p50 {r['p50_ms']:>8.2f} ms"
                      f"  p99 {r['p99_ms']:>8.2f} ms  errors {r['errors']}  "
                      f"({r['requests']} requests)", flush=True)
    finally:
        for proc in procs:
            stop_server(proc)
    meta = {"workers": args.workers, "rate": args.rate, "concurrency": args.concurrency,
            "duration": args.duration, "warmup": args.warmup, "sample": args.sample, "bundle": args.bundle,
            "items": None if args.trivial_only else n_items,
            "machine": f"{platform.machine()} {os.cpu_count()} cpus", "host": HOST}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    if "complements paced" in results and "trivial /ping paced" in results:
        ratio = results["complements paced"]["p50_ms"] / max(
            results["trivial /ping paced"]["p50_ms"], 1e-6)
        print(f"complements p50 / trivial p50 = {ratio:.1f}x")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
