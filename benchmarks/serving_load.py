"""Serving load benchmark: ranking requests of 100 candidates over REST vs in-process; prints JSON.

Starts our TF Serving-compatible REST server (`python -m watchnext.serving.server`) as a
subprocess on loopback (so the load generator does not share its GIL), then, for each
concurrency level (default 1, 8, 32), sends `:predict` requests that rank --candidates items for
one user (row format, the `predict` signature; the bodies are encoded beforehand) from that many
threads, each on its own keep-alive connection, until --requests requests or --seconds seconds,
whichever comes first. The same call is then timed in this process at the same concurrency:

- `in_process`: numpy columns of the same 100 candidates -> the SavedModel signature;
- `in_process_rest_handler`: the same request body through the server's handler without HTTP
  (JSON decode + validation + signature + JSON encode), to split HTTP from JSON cost.

Reported per level: p50 / p99 / mean latency (ms), throughput (requests/s and candidates/s),
requests and errors (must be 0; the exit code is 1 otherwise). REST answers are also checked
against the in-process outputs (`outputs_match`).

--model-base is a pushed ranker (<out>/serving, whose `ranker` directory holds versions, or
<out>/serving/ranker itself); its newest version is the one served. Without it, a small toy
ranker with the ranker's signatures (serving/toy_ranker.py) is built in a temporary directory and
the JSON says so ("model_source"). Candidate features are synthetic (ids unknown to a real
ranker take its OOV path, which costs the same).

Examples:
    python benchmarks/serving_load.py --seconds 3 --requests 300          # toy model, ~1 minute
    python benchmarks/serving_load.py --model-base runs/latest/serving --seconds 20 --requests 5000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def log(message: str) -> None:
    print(f"[serving_load] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-base", help="pushed models (<out>/serving) or one model's directory")
    parser.add_argument(
        "--model", default="ranker", help="model name under --model-base (default: %(default)s)"
    )
    parser.add_argument("--signature", default="predict", help="signature to call (default: %(default)s)")
    parser.add_argument("--candidates", type=int, default=100, help="items ranked per request (default: 100)")
    parser.add_argument(
        "--concurrency", default="1,8,32", help="concurrent clients, comma-separated (default: %(default)s)"
    )
    parser.add_argument("--requests", type=int, default=2000, help="at most this many requests per level")
    parser.add_argument("--seconds", type=float, default=10.0, help="at most this long per level")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests before each mode")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def toy_model_base(directory: str, model: str) -> str:
    from watchnext.serving.toy_ranker import export_toy_ranker

    export_toy_ranker(os.path.join(directory, model, "1"))
    return directory


def resolve_model(model_base: str, model: str) -> tuple[str, str]:
    """(model name as served, newest version directory)."""
    from watchnext.serving.model_registry import version_dirs

    versions = version_dirs(model_base)
    if versions:
        model = os.path.basename(os.path.abspath(model_base))
    else:
        versions = version_dirs(os.path.join(model_base, model))
    if not versions:
        raise SystemExit(f"no numeric version directory of model {model!r} under {model_base}")
    return model, versions[max(versions)]


def request_rows(count: int, candidates: int) -> list[list[dict]]:
    from watchnext.serving.toy_ranker import USERS, candidate_features

    return [candidate_features(candidates, user_id=USERS[i % len(USERS)], seed=i * 7) for i in range(count)]


def summarize(latencies: list[float], errors: int, wall: float, candidates: int) -> dict[str, Any]:
    done = len(latencies)
    ms = np.array(latencies) * 1000.0 if latencies else np.array([np.nan])
    return {
        "requests": done,
        "errors": errors,
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "requests_per_s": round(done / wall, 1) if wall > 0 else None,
        "candidates_per_s": round(done * candidates / wall, 1) if wall > 0 else None,
        "wall_s": round(wall, 2),
    }


def run_level(
    make_worker: Callable[[], Callable[[int], None]], concurrency: int, max_requests: int, max_seconds: float
) -> tuple[list[float], int, float]:
    """Runs `concurrency` threads calling their worker(i) until the request or time bound."""
    lock = threading.Lock()
    issued = [0]
    latencies: list[float] = []
    errors = [0]
    deadline = time.perf_counter() + max_seconds

    def loop() -> None:
        call = make_worker()
        while True:
            with lock:
                if issued[0] >= max_requests or time.perf_counter() >= deadline:
                    return
                index = issued[0]
                issued[0] += 1
            started = time.perf_counter()
            try:
                call(index)
            except Exception as error:  # noqa: BLE001 - counted, the first few reported
                with lock:
                    errors[0] += 1
                    if errors[0] <= 3:
                        log(f"error: {type(error).__name__}: {error}")
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0], time.perf_counter() - started


def rest_worker_factory(port: int, path: str, bodies: list[bytes]) -> Callable[[], Callable[[int], None]]:
    def make() -> Callable[[int], None]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json"}

        def call(i: int) -> None:
            connection.request("POST", path, body=bodies[i % len(bodies)], headers=headers)
            response = connection.getresponse()
            data = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")

        return call

    return make


def start_server(model_base: str, model: str, port: int, log_path: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "watchnext.serving.server", "--model-base", model_base]
    command += ["--port", str(port), "--poll-seconds", "0"]
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited ({process.returncode}); its log: {log_path}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", f"/v1/models/{model}")
            response = connection.getresponse()
            status = json.loads(response.read()) if response.status == 200 else {}
            if any(s["state"] == "AVAILABLE" for s in status.get("model_version_status", [])):
                return process
        except OSError:
            pass
        time.sleep(0.3)
    process.terminate()
    raise SystemExit(f"the server did not serve {model} within 180 s; its log: {log_path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="serving_load-") as scratch:
        import tensorflow as tf

        from watchnext.serving.model_registry import ModelRegistry
        from watchnext.serving.rest_api import handle_post

        if args.model_base:
            model_base = os.path.abspath(args.model_base)
            source = "pushed model (--model-base)"
        else:
            log("no --model-base: building a toy ranker with the ranker's signatures (serving/toy_ranker.py)")
            model_base = toy_model_base(scratch, args.model)
            source = "toy ranker built by the benchmark (serving/toy_ranker.py): not a trained model"
        model, version_dir = resolve_model(model_base, args.model)
        log(f"model {model}, version {os.path.basename(version_dir)} ({version_dir})")

        registry = ModelRegistry(model_base, poll_seconds=0, num_versions=1).start()
        loaded = registry.get(model)
        signature = loaded.signature(args.signature)
        rows_per_request = request_rows(16, args.candidates)
        bodies = [
            json.dumps({"signature_name": args.signature, "instances": rows}).encode()
            for rows in rows_per_request
        ]
        tensors = [
            {
                name: np.array(
                    [row[name] for row in rows],
                    dtype=object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype,
                )
                for name, spec in signature.inputs.items()
            }
            for rows in rows_per_request
        ]
        path = f"/v1/models/{model}:predict"

        port = args.port or free_port()
        server_log = os.path.join(scratch, "server.log")
        log(f"starting the server on 127.0.0.1:{port}")
        server = start_server(model_base, model, port, server_log)
        try:
            # The REST answer must equal the in-process one.
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("POST", path, body=bodies[0], headers={"Content-Type": "application/json"})
            rest_answer = json.loads(connection.getresponse().read())["predictions"]
            direct = signature(tensors[0])
            outputs_match = all(
                np.array_equal(np.array([p[name] for p in rest_answer], np.float32), direct[name])
                for name in direct
            )
            modes: dict[str, Callable[[], Callable[[int], None]]] = {
                "rest": rest_worker_factory(port, path, bodies),
                "in_process": lambda: lambda i: signature(tensors[i % len(tensors)]),
                "in_process_rest_handler": lambda: (
                    lambda i: _handler_ok(
                        handle_post(registry, path[len("/v1/models/") :], bodies[i % len(bodies)])
                    )
                ),
            }
            results: dict[str, dict[str, Any]] = {}
            for mode, factory in modes.items():
                run_level(factory, 1, args.warmup, 60.0)
                results[mode] = {}
                for concurrency in levels:
                    latencies, errors, wall = run_level(factory, concurrency, args.requests, args.seconds)
                    summary = summarize(latencies, errors, wall, args.candidates)
                    results[mode][str(concurrency)] = summary
                    log(
                        f"{mode} x{concurrency}: p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, "
                        f"{summary['requests_per_s']} req/s ({summary['requests']} requests, {errors} errors)"
                    )
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
            registry.stop()

    total_errors = sum(level["errors"] for mode in results.values() for level in mode.values())
    side_by_side = {
        str(c): {
            "rest_p50_ms": results["rest"][str(c)]["p50_ms"],
            "in_process_p50_ms": results["in_process"][str(c)]["p50_ms"],
            "rest_requests_per_s": results["rest"][str(c)]["requests_per_s"],
            "in_process_requests_per_s": results["in_process"][str(c)]["requests_per_s"],
        }
        for c in levels
    }
    report = {
        "benchmark": "serving_load",
        "model": model,
        "model_source": source,
        "version_dir": version_dir,
        "signature": args.signature,
        "candidates_per_request": args.candidates,
        "request_format": "row (instances), JSON bodies encoded beforehand",
        "request_bytes": len(bodies[0]),
        "bounds": {"requests_per_level": args.requests, "seconds_per_level": args.seconds},
        "server": "python -m watchnext.serving.server (FastAPI + uvicorn, 1 process) on 127.0.0.1",
        "outputs_match": outputs_match,
        "errors": total_errors,
        "results": results,
        "side_by_side": side_by_side,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
        },
        "total_s": round(time.perf_counter() - started_all, 1),
    }
    print(json.dumps(report, indent=2))
    return 0 if total_errors == 0 and outputs_match else 1


def _handler_ok(response) -> None:
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.payload}")
    response.body()  # the JSON encoding is part of the handler's cost


if __name__ == "__main__":
    sys.exit(main())
