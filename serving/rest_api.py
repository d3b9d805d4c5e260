"""TF Serving's REST API over a ModelRegistry, as a FastAPI app.

    GET  /v1/models/NAME[/versions/N]               version status (GetModelStatus JSON)
    GET  /v1/models/NAME[/versions/N]/metadata      signature defs (GetModelMetadata JSON)
    POST /v1/models/NAME[/versions/N]:predict       {"instances": [...]} or {"inputs": ...}
    POST /v1/models/NAME[/versions/N]:classify      {"examples": [...], "context": {...}}
    POST /v1/models/NAME[/versions/N]:regress       same

Errors are `{"error": "..."}` with HTTP 400 (bad request: the message names the input or
field), 404 (unknown model, version or signature-less servable) or 500. Version labels
(/labels/L) are not supported (no model config file here): 404.

The handlers (`handle_get`, `handle_post`) are plain functions of (registry, path, body) ->
`RestResponse`; the app runs POSTs in Starlette's thread pool, so requests run concurrently
(TensorFlow releases the GIL while a signature runs).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from watchnext.serving import json_examples, json_tensors
from watchnext.serving.errors import InvalidArgument, NotFound, ServingError
from watchnext.serving.model_registry import ModelRegistry

IGNORED_INPUTS_HEADER = "X-Watchnext-Ignored-Inputs"
VERBS = ("predict", "classify", "regress")
VERSION_TEXT = re.compile(r"[0-9]+", re.ASCII)

MAX_LOGGED_IGNORED = 1000
_logged_ignored: set[tuple[str, str, str]] = set()
_logged_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class RestResponse:
    status: int
    payload: dict[str, Any]
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def body(self) -> bytes:
        # NaN / Infinity are written as TF Serving writes them (not strict JSON).
        return json.dumps(self.payload, separators=(",", ":"), allow_nan=True).encode("utf-8")


def error_response(error: ServingError) -> RestResponse:
    return RestResponse(error.status, {"error": error.message})


def _parse_version(text: str) -> int:
    if not VERSION_TEXT.fullmatch(text):
        raise InvalidArgument(f"Failed to convert version: {text} to numeric.")
    return int(text)


def _parse_model_path(path: str) -> tuple[str, int | None, str]:
    """'NAME[/versions/N][/rest]' -> (name, version, rest)."""
    parts = path.split("/")
    name, version, rest = parts[0], None, parts[1:]
    if not name:
        raise NotFound("Malformed request: no model name")
    if len(rest) >= 2 and rest[0] == "versions":
        version = _parse_version(rest[1])
        rest = rest[2:]
    elif len(rest) >= 2 and rest[0] == "labels":
        raise NotFound(f"Unrecognized servable version label: {rest[1]} (version labels are not supported)")
    return name, version, "/".join(rest)


def handle_get(registry: ModelRegistry, path: str) -> RestResponse:
    """GET /v1/models/<path>: status or metadata."""
    try:
        name, version, rest = _parse_model_path(path)
        if rest == "":
            statuses = registry.status(name, version)
            return RestResponse(200, {"model_version_status": [s.as_json() for s in statuses]})
        if rest == "metadata":
            loaded = registry.get(name, version)
            return RestResponse(
                200,
                {
                    "model_spec": {"name": name, "signature_name": "", "version": str(loaded.version)},
                    "metadata": {"signature_def": {"signature_def": loaded.signature_def_json}},
                },
            )
        raise NotFound(f"Malformed request: GET /v1/models/{path}")
    except ServingError as error:
        return error_response(error)


def _log_ignored(model: str, signature: str, names: tuple[str, ...]) -> None:
    with _logged_lock:
        if len(_logged_ignored) >= MAX_LOGGED_IGNORED:
            return  # clients sending ever new names: the header still reports them
        new = [n for n in names if (model, signature, n) not in _logged_ignored]
        _logged_ignored.update((model, signature, n) for n in new)
    if new:
        logging.info(
            "%s: ignoring request input(s) %s that signature '%s' does not take (see serving/README.md)",
            model,
            ", ".join(new),
            signature,
        )


def _decode(body: bytes) -> Any:
    if not body:
        raise InvalidArgument("JSON Parse error: The document is empty")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"JSON Parse error: {error}") from None


def predict(registry: ModelRegistry, name: str, version: int | None, request: Any) -> RestResponse:
    loaded = registry.get(name, version)
    parsed = json_tensors.parse_predict_request(request, loaded.signature)
    outputs = loaded.signature(parsed.signature_name)(parsed.tensors)
    headers = {}
    if parsed.ignored:
        _log_ignored(name, parsed.signature_name, parsed.ignored)
        headers[IGNORED_INPUTS_HEADER] = ",".join(parsed.ignored)
    return RestResponse(200, json_tensors.predict_response(outputs, parsed.row_format), headers)


def classify_or_regress(
    registry: ModelRegistry, name: str, version: int | None, request: Any, verb: str
) -> RestResponse:
    loaded = registry.get(name, version)
    if type(request) is dict and type(request.get("signature_name", "")) is not str:
        raise InvalidArgument("'signature_name' must be a string")
    signature = loaded.signature(request.get("signature_name") if type(request) is dict else None)
    input_name = json_examples.examples_signature(signature, verb)
    examples = np.array(json_examples.serialized_examples(request), dtype=object)
    try:
        outputs = signature({input_name: examples})
    except InvalidArgument as error:
        message = error.message
        if "Data types don't match" in message and "int64" in message and "float" in message:
            error = InvalidArgument(f"{message} (write float feature values with a decimal point: 3.0)")
        raise error from None
    if verb == "regress":
        return RestResponse(200, {"results": json_examples.regress_results(signature, outputs)})
    return RestResponse(200, {"results": json_examples.classify_results(signature, outputs)})


def handle_post(registry: ModelRegistry, path: str, body: bytes) -> RestResponse:
    """POST /v1/models/<path>:<verb>."""
    try:
        target, sep, verb = path.rpartition(":")
        if not sep or verb not in VERBS:
            raise InvalidArgument(
                f"Malformed request: POST /v1/models/{path} "
                "(expected NAME[/versions/N]:predict|classify|regress)"
            )
        name, version, rest = _parse_model_path(target)
        if rest:
            raise InvalidArgument(f"Malformed request: POST /v1/models/{path}")
        registry.get(name, version)  # 404 before parsing a body for nothing
        request = _decode(body)
        if verb == "predict":
            return predict(registry, name, version, request)
        return classify_or_regress(registry, name, version, request, verb)
    except ServingError as error:
        return error_response(error)
    except Exception as error:  # noqa: BLE001 - answered as TF Serving would (500 + message)
        logging.exception("POST /v1/models/%s failed", path)
        return RestResponse(500, {"error": f"{type(error).__name__}: {error}"})


def create_app(registry: ModelRegistry) -> FastAPI:
    """The FastAPI app serving `registry`."""
    app = FastAPI(title="watchnext model server", docs_url=None, redoc_url=None, openapi_url=None)

    def respond(result: RestResponse) -> Response:
        return Response(
            result.body(), status_code=result.status, media_type="application/json", headers=result.headers
        )

    @app.get("/v1/models/{path:path}")
    async def get_model(path: str) -> Response:
        return respond(handle_get(registry, path))

    @app.post("/v1/models/{path:path}")
    async def post_model(path: str, request: Request) -> Response:
        body = await request.body()
        return respond(await run_in_threadpool(handle_post, registry, path, body))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        return respond(RestResponse(error.status_code, {"error": f"{error.detail}: {request.url.path}"}))

    return app
