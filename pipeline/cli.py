"""The `watchnext` command line.

watchnext run                          synthetic logs -> TFX pipeline -> evaluated, pushed models
watchnext run --data logs DIR          the same on your raw-log CSV files (or --logs DIR)
watchnext run --data movielens ML_DIR  the same on MovieLens .dat files
watchnext run --runner kubeflow --image IMAGE --out gs://...   write the Kubeflow V2 pipeline JSON
watchnext eval-report [RUN_DIR]        the TFMA slice table of the run's evaluation
watchnext serve --model-base DIR       TF Serving's REST API over the pushed models (serving/README.md)
watchnext query rank|retrieve ...      a REST (or --grpc) client for it or for TF Serving
watchnext generate --out DIR           write synthetic logs (+ ground truth)
watchnext convert-movielens ML_DIR --out DIR   MovieLens-1M -> raw-log CSV
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from watchnext.pipeline.configs import (
    DEFAULT_OUTPUT_DIR,
    EvaluationConfig,
    PipelineConfig,
    absolute,
    is_remote,
)

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def _synthetic_config(args: argparse.Namespace):
    from watchnext.pipeline.data import synthetic

    config = synthetic.SyntheticConfig(seed=args.seed)
    if args.rows is not None:
        config = dataclasses.replace(config, num_requests=max(1, -(-args.rows // config.slate_size)))
    if args.users is not None:
        config = dataclasses.replace(config, num_users=args.users)
    return config


def _config_digest(config) -> str:
    text = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def ensure_synthetic_logs(args: argparse.Namespace, out_dir: Path) -> Path:
    """Generates the synthetic logs once per config; later runs reuse the same files."""
    from watchnext.pipeline.data import synthetic

    config = _synthetic_config(args)
    data_dir = out_dir / "data" / f"synthetic-{_config_digest(config)}"
    if (data_dir / "logs.csv").exists() and (data_dir / "ground_truth.json").exists():
        logging.info("reusing synthetic logs in %s", data_dir)
        return data_dir
    started = time.monotonic()
    generated = synthetic.generate(config, data_dir)
    logging.info(
        "generated %s synthetic rows in %s (%.1f s)",
        generated.num_rows,
        data_dir,
        time.monotonic() - started,
    )
    return data_dir


def data_source(args: argparse.Namespace, out_dir: Path) -> tuple[str, str]:
    """(data_dir, input_pattern) for --data / --logs; generates or converts data when needed."""
    from watchnext.pipeline.data import synthetic

    kind, *rest = args.data or (["logs", args.logs] if args.logs else ["synthetic"])
    if kind == "synthetic" and not rest:
        return str(ensure_synthetic_logs(args, out_dir)), synthetic.LOGS_FILE
    if kind == "logs" and len(rest) == 1:
        return absolute(rest[0]), args.input_pattern
    if kind == "movielens" and len(rest) == 1:
        return str(ensure_movielens_logs(Path(rest[0]), out_dir)), "logs.csv"
    raise ValueError(
        f"--data takes 'synthetic', 'movielens PATH' or 'logs PATH', not {' '.join(args.data)!r}"
    )


def ensure_movielens_logs(movielens_dir: Path, out_dir: Path) -> Path:
    """Converts MovieLens .dat files to raw-log CSV once per source folder."""
    from watchnext.pipeline.data import movielens

    source = movielens_dir.resolve()
    target = out_dir / "data" / f"movielens-{hashlib.sha256(str(source).encode()).hexdigest()[:10]}"
    if not (target / "logs.csv").exists():
        logging.info("%s", movielens.convert_movielens_dir(source, target / "logs.csv").summary())
    return target


def pipeline_config(args: argparse.Namespace, out_dir: str) -> PipelineConfig:
    data_dir, input_pattern = data_source(args, Path(out_dir))
    return PipelineConfig(
        data_dir=data_dir,
        input_pattern=input_pattern,
        output_dir=out_dir,
        train_steps=args.train_steps,
        hstu_train_steps=args.hstu_train_steps,
        enable_cache=not args.no_cache,
        beam_direct_running_mode=args.beam_mode,
        beam_workers=args.workers,
        beam_runner=args.beam_runner,
        beam_extra_args=tuple(args.beam_arg or ()),
        evaluation=EvaluationConfig(
            min_click_auc=args.min_click_auc, max_click_auc_drop=args.max_click_auc_drop
        ),
    )


def cmd_run(args: argparse.Namespace) -> int:
    if args.runner == "kubeflow":
        from watchnext.pipeline import kubeflow_v2_runner

        if not args.image:
            raise ValueError(
                "--runner kubeflow needs --image (a container image with this package installed)"
            )
        config = pipeline_config(args, args.out if is_remote(args.out) else absolute(args.out))
        path = kubeflow_v2_runner.compile_pipeline(config, args.image, args.kubeflow_output)
        print(f"Kubeflow V2 pipeline written to {path}; submit it with kfp or Vertex AI Pipelines")
        return 0
    from watchnext.pipeline import local_runner

    config = pipeline_config(args, absolute(args.out))
    report = local_runner.run(config)
    print(report.format())
    return 0


def cmd_eval_report(args: argparse.Namespace) -> int:
    from watchnext.pipeline.eval_report import report

    print(report(args.run_dir))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from watchnext.pipeline.data import synthetic

    generated = synthetic.generate(_synthetic_config(args), Path(args.out))
    print(f"wrote {generated.num_rows} rows to {generated.logs_path}")
    return 0


def cmd_convert_movielens(args: argparse.Namespace) -> int:
    from watchnext.pipeline.data import movielens

    report = movielens.convert_movielens_dir(Path(args.movielens_dir), Path(args.out) / "logs.csv")
    print(report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from watchnext.pipeline.data.synthetic import SyntheticConfig

    default_rows = SyntheticConfig().num_requests * SyntheticConfig().slate_size
    parser = argparse.ArgumentParser(
        prog="watchnext",
        description="TFX + Keras 3 recommender pipeline: raw logs -> features -> models -> serving.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show TFX's and Beam's own logs")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", help="run the TFX pipeline end to end (LocalDagRunner), or compile it for Kubeflow"
    )
    run.add_argument(
        "--data",
        nargs="+",
        metavar="KIND [PATH]",
        help="'synthetic' (default), 'movielens ML_DIR' (.dat files) or 'logs DIR' (raw-log CSV files)",
    )
    run.add_argument("--logs", metavar="DIR", help="same as --data logs DIR")
    run.add_argument(
        "--input-pattern",
        default=PipelineConfig.input_pattern,
        help="which files in --logs to read (default: %(default)s)",
    )
    run.add_argument("--out", default=DEFAULT_OUTPUT_DIR, help="output directory (default: %(default)s)")
    run.add_argument("--seed", type=int, default=1, help="synthetic data seed (default: %(default)s)")
    run.add_argument(
        "--rows",
        type=int,
        help=f"synthetic impression rows, rounded up to whole requests (default: {default_rows})",
    )
    run.add_argument(
        "--users", type=int, help=f"synthetic established users (default: {SyntheticConfig().num_users})"
    )
    run.add_argument(
        "--train-steps",
        type=int,
        default=PipelineConfig.train_steps,
        help="ranker training steps (default: %(default)s)",
    )
    run.add_argument(
        "--hstu-train-steps",
        type=int,
        default=PipelineConfig.hstu_train_steps,
        help="HSTU training steps, at most (default: %(default)s)",
    )
    run.add_argument(
        "--beam-mode",
        choices=["in_memory", "multi_processing", "multi_threading"],
        default=PipelineConfig.beam_direct_running_mode,
        help="Beam DirectRunner mode (default: %(default)s)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=PipelineConfig.beam_workers,
        help="Beam DirectRunner workers (default: %(default)s)",
    )
    run.add_argument("--no-cache", action="store_true", help="rerun every component (no MLMD cache)")
    run.add_argument(
        "--min-click-auc",
        type=float,
        default=EvaluationConfig.min_click_auc,
        help="bless (and push) a ranker only if its eval click AUC reaches this (default: %(default)s)",
    )
    run.add_argument(
        "--max-click-auc-drop",
        type=float,
        default=EvaluationConfig.max_click_auc_drop,
        help="... and it is at most this much below the last blessed ranker's (default: %(default)s)",
    )
    run.add_argument(
        "--runner",
        choices=["local", "kubeflow"],
        default="local",
        help="local: run here (LocalDagRunner); kubeflow: write the Kubeflow V2 pipeline JSON",
    )
    run.add_argument("--image", help="--runner kubeflow: container image holding this package")
    run.add_argument(
        "--kubeflow-output",
        default="watchnext_pipeline.json",
        help="--runner kubeflow: where to write the pipeline JSON (default: %(default)s)",
    )
    run.add_argument(
        "--beam-runner",
        default=PipelineConfig.beam_runner,
        help="Beam runner of the Beam components: DirectRunner (default), DataflowRunner, FlinkRunner, ...",
    )
    run.add_argument(
        "--beam-arg",
        action="append",
        metavar="ARG",
        help="extra Beam pipeline option, repeatable (e.g. --beam-arg=--project=P --beam-arg=--region=R)",
    )
    run.set_defaults(handler=cmd_run)

    report = commands.add_parser("eval-report", help="print the TFMA slice table of a run's evaluation")
    report.add_argument("run_dir", nargs="?", default=DEFAULT_OUTPUT_DIR, help="the run's --out directory")
    report.set_defaults(handler=cmd_eval_report)

    generate = commands.add_parser("generate", help="write synthetic raw logs and their ground truth")
    generate.add_argument("--out", required=True, help="output directory")
    generate.add_argument("--seed", type=int, default=1)
    generate.add_argument(
        "--rows", type=int, help=f"impression rows, rounded up to whole requests (default: {default_rows})"
    )
    generate.add_argument(
        "--users", type=int, help=f"established users (default: {SyntheticConfig().num_users})"
    )
    generate.set_defaults(handler=cmd_generate)

    convert = commands.add_parser("convert-movielens", help="MovieLens-1M .dat files -> raw-log CSV")
    convert.add_argument("movielens_dir", help="folder with ratings*.dat, users.dat, movies.dat")
    convert.add_argument("--out", required=True, help="output directory (logs.csv + rejects)")
    convert.set_defaults(handler=cmd_convert_movielens)

    from watchnext.serving.cli_commands import add_commands

    add_commands(commands)  # serve, query
    return parser


# Warnings TFX 1.21 prints on every run that say nothing about the user's run.
KNOWN_NOISE = (
    "ArtifactQuery.property_predicate is not supported",
    "Fallback to non-ZetaSQL contexts execution query",
    "direct_running_mode should be",
    "Discarding unparseable args",
    "No semi_persistent_directory found",
)


# TFX's INFO lines that show progress per component.
PROGRESS = ("Component ", "A cached execution")


def _is_news(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    if any(noise in message for noise in KNOWN_NOISE):
        return False
    if record.name == "absl" and record.levelno < logging.WARNING:
        return message.startswith(PROGRESS)
    return True


def configure_logging(verbose: bool) -> None:
    """Our INFO progress lines always; TFX/Beam INFO lines with --verbose."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr, force=True)
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_is_news)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return args.handler(args)
    except Exception as error:  # noqa: BLE001 - one clear line for users; --verbose shows the trace
        if args.verbose:
            raise
        logging.error("watchnext %s failed: %s: %s", args.command, type(error).__name__, error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
