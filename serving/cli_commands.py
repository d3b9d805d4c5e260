"""`watchnext serve` and `watchnext query`: registered on the CLI's subparsers by `add_commands`.

    watchnext serve --model-base <out>/serving [--port 8501] [--host 127.0.0.1] [--poll-seconds 5]
    watchnext query rank --user-id u1 --items i1 i2 i3 [--feature device=ios ...] [--url URL|--grpc HOST:PORT]
    watchnext query rank --user-id u1 --candidates candidates.json   (a JSON list of per-item feature dicts)
    watchnext query retrieve --history 12 7 99 [--model hstu] [--signature NAME] [--top 10]

Each handler takes the parsed args and returns an exit code (pipeline/cli.py's convention).
Nothing heavy (TensorFlow, FastAPI) is imported until a handler runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """`watchnext serve`'s options (also `python -m watchnext.serving.server`'s)."""
    parser.add_argument(
        "--model-base",
        required=True,
        help="directory of model directories (<out>/serving) or one model's directory (<out>/serving/ranker)",
    )
    parser.add_argument("--port", type=int, default=8501, help="REST port (default: %(default)s)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 for all (default: %(default)s)"
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=5.0,
        help="how often to look for new and removed versions; 0 = only at start (default: %(default)s)",
    )
    parser.add_argument(
        "--num-versions",
        type=int,
        default=2,
        help="how many of the newest loadable versions stay loaded per model; the newest is the default "
        "(default: %(default)s)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")


def cmd_serve(args: argparse.Namespace) -> int:
    from watchnext.serving.server import serve

    return serve(args.model_base, args.host, args.port, args.poll_seconds, args.num_versions, args.access_log)


def _client(args: argparse.Namespace):
    from watchnext.serving.client import GrpcClient, RestClient

    if args.grpc:
        return GrpcClient(args.grpc, timeout=args.timeout)
    return RestClient(args.url, timeout=args.timeout)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _assignments(pairs: list[str] | None, option: str) -> dict[str, Any]:
    values = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"{option} takes NAME=VALUE, not {pair!r}")
        values[name] = _json_or_text(value)
    return values


def _read_candidates(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        candidates = json.loads(text)
    except json.JSONDecodeError:  # JSON Lines
        candidates = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
        raise ValueError(f"{path} must hold a JSON list (or JSON Lines) of per-item feature objects")
    return candidates


def cmd_query_rank(args: argparse.Namespace) -> int:
    from watchnext.serving.client import rank

    candidates = _read_candidates(args.candidates) if args.candidates else []
    candidates += [{args.id_feature: item} for item in args.items or ()]
    if not candidates:
        raise ValueError("give candidates with --items and/or --candidates")
    shared = {"user_id": args.user_id, **_assignments(args.feature, "--feature")}
    result = rank(
        _client(args),
        args.model,
        candidates,
        shared,
        signature=args.signature,
        score_output=args.score_output,
        id_feature=args.id_feature,
        version=args.version,
        top=args.top,
    )
    for key, what in (
        ("filled_with_defaults", "not given, sent as 0 / empty"),
        ("dropped_inputs", "not inputs"),
    ):
        if result[key]:
            print(f"[query] {what}: {', '.join(result[key])}", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


def cmd_query_retrieve(args: argparse.Namespace) -> int:
    from watchnext.serving.client import retrieve

    history = [_json_or_text(item) for item in args.history]
    result = retrieve(
        _client(args),
        args.model,
        history,
        signature=args.signature,
        history_input=args.history_input,
        extra_inputs=_assignments(args.input, "--input"),
        k=args.top,
        ids_output=args.ids_output,
        scores_output=args.scores_output,
        version=args.version,
    )
    print(json.dumps(result, indent=2))
    return 0


def add_commands(subparsers) -> None:
    """Registers `serve` and `query` on an argparse subparsers object (see pipeline/cli.py)."""
    serve = subparsers.add_parser(
        "serve",
        help="serve pushed models with TF Serving's REST API (local; new versions picked up live)",
        description="Serves every model under --model-base with TF Serving's REST API "
        "(/v1/models/NAME[:predict|:classify|:regress], /metadata); see serving/README.md.",
    )
    add_serve_arguments(serve)
    serve.set_defaults(handler=cmd_serve)

    common = argparse.ArgumentParser(add_help=False)
    target = common.add_mutually_exclusive_group()
    target.add_argument(
        "--url",
        default="http://127.0.0.1:8501",
        help="REST server: ours, TF Serving's or KServe's (default: %(default)s)",
    )
    target.add_argument(
        "--grpc", metavar="HOST:PORT", help="use TF Serving's gRPC API instead (e.g. localhost:8500)"
    )
    common.add_argument("--version", type=int, help="a specific model version (default: the served one)")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds (default: %(default)s)")

    query = subparsers.add_parser(
        "query", help="query a served model (REST or gRPC): rank items, retrieve top-K"
    )
    kinds = query.add_subparsers(dest="query_kind", required=True)

    rank = kinds.add_parser(
        "rank",
        parents=[common],
        help="score one user's candidate items with the ranker; print them best first",
        description="Scores N candidates for one user in one predict call. Inputs the signature takes that "
        "nobody gave are sent as 0 / empty (a missing feature); features it does not take are dropped.",
    )
    rank.add_argument("--user-id", required=True)
    rank.add_argument(
        "--items", nargs="+", metavar="ITEM_ID", help="candidate item ids (no other item features)"
    )
    rank.add_argument(
        "--candidates", metavar="FILE", help="JSON list (or JSON Lines) of per-item feature objects"
    )
    rank.add_argument(
        "--feature",
        action="append",
        metavar="NAME=VALUE",
        help="a user or context feature for every candidate, repeatable (e.g. device=ios, hour_of_day=20)",
    )
    rank.add_argument("--model", default="ranker", help="model name (default: %(default)s)")
    rank.add_argument("--signature", default="predict", help="signature (default: %(default)s)")
    rank.add_argument("--score-output", default="score", help="output to sort by (default: %(default)s)")
    rank.add_argument(
        "--id-feature", default="item_id", help="the candidates' id feature (default: %(default)s)"
    )
    rank.add_argument("--top", type=int, help="print only the best N")
    rank.set_defaults(handler=cmd_query_rank)

    retrieve = kinds.add_parser(
        "retrieve",
        parents=[common],
        help="top-K items for a user history from a retrieval (HSTU) model",
        description="Sends the history as a batch of one to a retrieval signature and prints the top-K "
        "(ids, scores) outputs, or the K best indices of a per-item score output.",
    )
    retrieve.add_argument(
        "--history", nargs="+", required=True, metavar="ITEM", help="item ids, oldest first"
    )
    retrieve.add_argument("--model", default="hstu", help="model name (default: %(default)s)")
    retrieve.add_argument("--signature", default="serving_default", help="signature (default: %(default)s)")
    retrieve.add_argument(
        "--history-input", default="history_item_ids", help="the history's input name (default: %(default)s)"
    )
    retrieve.add_argument(
        "--input", action="append", metavar="NAME=JSON", help="another input of the signature, repeatable"
    )
    retrieve.add_argument("--top", type=int, default=10, help="K (default: %(default)s)")
    retrieve.add_argument("--ids-output", help="output holding item ids (default: guessed)")
    retrieve.add_argument("--scores-output", help="output holding scores (default: guessed)")
    retrieve.set_defaults(handler=cmd_query_retrieve)
