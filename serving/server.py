"""A local model server with TF Serving's REST API (FastAPI + uvicorn) over pushed SavedModels.

    watchnext serve --model-base <out>/serving [--port 8501] [--host 127.0.0.1] [--poll-seconds 5]
    python -m watchnext.serving.server --model-base <out>/serving      (the same, without the CLI)

Serves every model directory under --model-base (see model_registry.py for the version policy
and rest_api.py for the endpoints). For production use TF Serving itself or KServe: see
serving/README.md and serving/deploy/.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
import time

from watchnext.serving.model_registry import ModelRegistry

DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _uvicorn_server(registry: ModelRegistry, host: str, port: int, access_log: bool, log_level: str):
    import uvicorn

    from watchnext.serving.rest_api import create_app

    config = uvicorn.Config(
        create_app(registry),
        host=host,
        port=port,
        access_log=access_log,
        log_config=None,  # uvicorn's lines go through the root logger, in the CLI's format
        log_level=log_level,
        lifespan="off",
        timeout_keep_alive=30,
    )
    return uvicorn.Server(config)


@dataclasses.dataclass
class RunningServer:
    """A server started by `start_in_thread`: its address, and `stop()`."""

    registry: ModelRegistry
    host: str
    port: int
    server: object
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.registry.stop()


def start_in_thread(
    registry: ModelRegistry, host: str = DEFAULT_HOST, port: int = 0, startup_timeout: float = 30.0
) -> RunningServer:
    """Starts the registry (loads what is there) and the HTTP server in a daemon thread.

    `port=0` takes a free port (bound here, so there is no race); see `RunningServer.port`.
    """
    registry.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = _uvicorn_server(registry, host, sock.getsockname()[1], access_log=False, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="rest-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            registry.stop()
            raise RuntimeError(f"the REST server on {host}:{sock.getsockname()[1]} did not start")
        time.sleep(0.02)
    return RunningServer(registry, host, sock.getsockname()[1], server, thread)


def serve(
    model_base: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    poll_seconds: float = 5.0,
    num_versions: int = 2,
    access_log: bool = False,
) -> int:
    """Runs the server in the foreground until SIGINT/SIGTERM; returns the exit code."""
    if not os.path.isdir(model_base):
        raise FileNotFoundError(f"--model-base {model_base} is not a directory")
    registry = ModelRegistry(model_base, poll_seconds=poll_seconds, num_versions=num_versions).start()
    for name in registry.model_names():
        version = registry.default_version(name)
        logging.info(
            "model %s: %s", name, f"serving version {version}" if version else "no loadable version yet"
        )
    if not registry.model_names():
        logging.warning("no model under %s yet; polling every %s s", model_base, poll_seconds)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler
    # that was installed before it: a no-op here, so `serve` returns 0 instead of dying by signal.
    stopped = []
    previous = {sig: signal.signal(sig, lambda signum, frame: stopped.append(signum)) for sig in STOP_SIGNALS}
    try:
        _uvicorn_server(registry, host, port, access_log, log_level="info").run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        registry.stop()
    logging.info("server stopped%s", f" ({signal.Signals(stopped[0]).name})" if stopped else "")
    return 0


def main(argv: list[str] | None = None) -> int:
    from watchnext.serving.cli_commands import add_serve_arguments

    parser = argparse.ArgumentParser(
        prog="python -m watchnext.serving.server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    return serve(args.model_base, args.host, args.port, args.poll_seconds, args.num_versions, args.access_log)


if __name__ == "__main__":
    sys.exit(main())
