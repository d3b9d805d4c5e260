"""FeatureGen and SequenceGen on Beam vs a single-process pandas implementation; prints JSON.

For each data set the raw-log CSV is first turned into raw Examples by
LogExampleGen (timed as `prepare`). Then, each as its own process whose whole
process tree's memory is sampled:
  - FeatureGen and SequenceGen on Beam's DirectRunner (multi_processing, --workers);
  - the same transformations in pandas (benchmarks/pandas_reference.py), single process;
and the outputs are compared record by record (they must be identical).

    env/run.sh python benchmarks/beam_features.py                       # MovieLens-1M subset + scale
    env/run.sh python benchmarks/beam_features.py --scale-rows 1000000   # a quicker scale point
    env/run.sh python benchmarks/beam_features.py --movielens ""         # scale only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
DEFAULT_MOVIELENS = HERE.parent.parent / "shared" / "data" / "ml-1m"
SAMPLE_SECONDS = 0.1


# ---------------------------------------------------------------- jobs (run in a child process)


def _examples_artifact(uri: str):
    from tfx.types import artifact_utils, standard_artifacts

    artifact = standard_artifacts.Examples()
    artifact.uri = uri
    if os.path.isdir(uri):
        splits = sorted(d[len("Split-") :] for d in os.listdir(uri) if d.startswith("Split-"))
        artifact.split_names = artifact_utils.encode_split_names(splits)
    return artifact


def _beam_args(workers: int) -> list[str]:
    return [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]


def job_prepare(csv_dir: str, pattern: str, out: str, workers: int) -> None:
    from tfx.utils import proto_utils

    from watchnext.components.log_example_gen import RejectedRows
    from watchnext.components.log_example_gen.component import default_output_config
    from watchnext.components.log_example_gen.executor import Executor

    rejects = RejectedRows()
    rejects.uri = out + "-rejects"
    properties = {
        "input_base": csv_dir,
        "input_pattern": pattern,
        "input_fingerprint": "",
        "output_config": proto_utils.proto_to_json(default_output_config()),
        "max_rejected_fraction": 0.0,
    }
    executor = Executor(Executor.Context(beam_pipeline_args=_beam_args(workers)))
    executor.Do({}, {"examples": [_examples_artifact(out)], "rejects": [rejects]}, properties)


def job_beam_features(raw: str, out: str, workers: int) -> None:
    from watchnext.components.feature_gen import FeatureGenConfig
    from watchnext.components.feature_gen.executor import Executor

    executor = Executor(Executor.Context(beam_pipeline_args=_beam_args(workers)))
    inputs = {"examples": [_examples_artifact(raw)]}
    executor.Do(inputs, {"impressions": [_examples_artifact(out)]}, {"config": FeatureGenConfig().to_json()})


def job_beam_sequences(raw: str, out: str, workers: int, max_len: int) -> None:
    from watchnext.components.sequence_gen.executor import Executor

    executor = Executor(Executor.Context(beam_pipeline_args=_beam_args(workers)))
    outputs = {
        "retrieval_sequences": [_examples_artifact(os.path.join(out, "retrieval"))],
        "ranking_sequences": [_examples_artifact(os.path.join(out, "ranking"))],
    }
    executor.Do({"examples": [_examples_artifact(raw)]}, outputs, {"max_len": max_len})


def _read_records(uri: str) -> dict[str, list[bytes]]:
    import tensorflow as tf

    result = {}
    for split_dir in sorted(Path(uri).glob("Split-*")):
        files = sorted(str(p) for p in split_dir.glob("*.gz"))
        dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
        result[split_dir.name[len("Split-") :]] = [record.numpy() for record in dataset]
    return result


def _write_records(uri: str, records_by_split: dict[str, list[bytes]]) -> None:
    import tensorflow as tf

    for split, records in records_by_split.items():
        directory = Path(uri) / f"Split-{split}"
        directory.mkdir(parents=True, exist_ok=True)
        with tf.io.TFRecordWriter(str(directory / "data.gz"), options="GZIP") as writer:
            for record in records:
                writer.write(record)


def job_pandas_features(raw: str, out: str) -> None:
    import pandas_reference

    from watchnext.components.feature_gen import FeatureGenConfig

    frame = pandas_reference.load_frame(_read_records(raw))
    _write_records(out, pandas_reference.feature_gen(frame, FeatureGenConfig()))


def job_pandas_sequences(raw: str, out: str, max_len: int) -> None:
    import pandas_reference

    frame = pandas_reference.load_frame(_read_records(raw))
    for kind, by_split in pandas_reference.sequence_gen(frame, max_len).items():
        _write_records(os.path.join(out, kind), by_split)


JOBS = {
    "prepare": job_prepare,
    "beam_features": job_beam_features,
    "beam_sequences": job_beam_sequences,
    "pandas_features": job_pandas_features,
    "pandas_sequences": job_pandas_sequences,
}


# ---------------------------------------------------------------- measuring (parent process)


def _rss_by_process(process: psutil.Process) -> dict[int, int]:
    """RSS of a process and each of its descendants, by pid."""
    sizes = {}
    for member in [process, *process.children(recursive=True)]:
        try:
            sizes[member.pid] = member.memory_info().rss
        except psutil.Error:
            pass
    return sizes


def measure(job: str, *args) -> dict[str, float]:
    """Runs one job in a child process; wall time and peak RSS of its whole process tree.

    Also reports how that peak splits between the job process (the Beam runner, with TFX) and
    its Beam worker processes, at the sample where the total peaked.
    """
    command = [sys.executable, __file__, "_job", job, json.dumps(args)]
    started = time.monotonic()
    child = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(HERE)})
    watched = psutil.Process(child.pid)
    peak, peak_split = 0, {}
    while child.poll() is None:
        sizes = _rss_by_process(watched)
        if sum(sizes.values()) > peak:
            peak, peak_split = sum(sizes.values()), sizes
        time.sleep(SAMPLE_SECONDS)
    wall = time.monotonic() - started
    if child.returncode != 0:
        raise RuntimeError(f"job {job} failed with exit code {child.returncode}")
    workers = sorted((size for pid, size in peak_split.items() if pid != child.pid), reverse=True)
    result = {
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(peak / 2**20),
        "at_peak_job_mib": round(peak_split.get(child.pid, 0) / 2**20),
        "at_peak_workers_mib": [round(size / 2**20) for size in workers],
    }
    print(f"[beam_features] {job}: {result}", file=sys.stderr)
    return result


def output_digest(uri: str) -> dict[str, object]:
    """Record counts per split and an order-free digest of the (deterministically serialized) records."""
    import tensorflow as tf

    counts, digest = {}, hashlib.sha256()
    for split, records in _read_records(uri).items():
        canonical = sorted(
            tf.train.Example.FromString(r).SerializeToString(deterministic=True) for r in records
        )
        counts[split] = len(canonical)
        digest.update(split.encode())
        for record in canonical:
            digest.update(hashlib.sha256(record).digest())
    return {"counts": counts, "sha256": digest.hexdigest()}


def compare(beam: dict, pandas: dict, beam_uris: list[str], pandas_uris: list[str]) -> dict[str, object]:
    beam_digests = [output_digest(u) for u in beam_uris]
    pandas_digests = [output_digest(u) for u in pandas_uris]
    return {
        "beam": beam,
        "pandas": pandas,
        "beam_over_pandas_time": round(beam["wall_s"] / pandas["wall_s"], 2),
        "identical_outputs": beam_digests == pandas_digests,
        "outputs": beam_digests,
    }


def prepared(raw: str) -> bool:
    return os.path.isdir(raw) and any(d.startswith("Split-") for d in os.listdir(raw))


def run_dataset(name: str, csv_dir: str | None, pattern: str, work: Path, args, with_pandas: bool) -> dict:
    raw = str(work / name / "raw")
    for output in ("beam_features", "beam_sequences", "pandas_features", "pandas_sequences"):
        shutil.rmtree(work / name / output, ignore_errors=True)
    if csv_dir is None:
        result = {"prepare_log_example_gen": "reused " + raw}
    else:
        shutil.rmtree(raw, ignore_errors=True)
        result = {"prepare_log_example_gen": measure("prepare", csv_dir, pattern, raw, args.workers)}
    result["rows"] = sum(output_digest(raw)["counts"].values()) if with_pandas else None
    beam_features = str(work / name / "beam_features")
    beam_sequences = str(work / name / "beam_sequences")
    features = measure("beam_features", raw, beam_features, args.workers)
    sequences = measure("beam_sequences", raw, beam_sequences, args.workers, args.max_len)
    kinds = ("retrieval", "ranking")
    if not with_pandas:
        result["feature_gen"] = {"beam": features}
        result["sequence_gen"] = {"beam": sequences}
        return result
    pandas_features = str(work / name / "pandas_features")
    pandas_sequences = str(work / name / "pandas_sequences")
    result["feature_gen"] = compare(
        features, measure("pandas_features", raw, pandas_features), [beam_features], [pandas_features]
    )
    result["sequence_gen"] = compare(
        sequences,
        measure("pandas_sequences", raw, pandas_sequences, args.max_len),
        [os.path.join(beam_sequences, k) for k in kinds],
        [os.path.join(pandas_sequences, k) for k in kinds],
    )
    return result


def movielens_csv(movielens_dir: str, work: Path) -> str:
    from watchnext.pipeline.data import movielens

    out = work / "movielens_csv"
    report = movielens.convert_movielens_dir(movielens_dir, out / "logs.csv")
    print(f"[beam_features] {report.summary()}", file=sys.stderr)
    return str(out)


def synthetic_csv(rows: int, work: Path) -> str:
    from watchnext.pipeline.data import synthetic

    config = synthetic.SyntheticConfig(seed=11)
    scale = rows / config.num_rows
    config = synthetic.SyntheticConfig(
        seed=11,
        num_requests=-(-rows // config.slate_size),
        num_users=max(config.num_users, int(config.num_users * scale)),
        num_items=max(config.num_items, int(config.num_items * scale**0.5)),
    )
    out = work / f"synthetic_{rows}"
    synthetic.generate(config, out)
    return str(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--movielens", default=str(DEFAULT_MOVIELENS), help="ml-1m folder ('' to skip)")
    parser.add_argument(
        "--scale-rows", default="1000000,3000000,10000000", help="synthetic sizes, Beam only ('' to skip)"
    )
    parser.add_argument("--pandas-scale-max", type=int, default=1_000_000,
                        help="also run pandas on scale points up to this many rows")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="DirectRunner workers (default 2)")
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--work-dir", help="keep intermediate files here (default: a temporary folder)")
    parser.add_argument(
        "--reuse-prepared",
        action="store_true",
        help="with --work-dir: reuse the raw Examples a previous run prepared for a scale point "
        "(skips generating and LogExampleGen; the same seed gives the same data)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="beam_features_") as scratch:
        work = Path(args.work_dir or scratch)
        report: dict[str, object] = {"workers": args.workers, "max_len": args.max_len}
        if args.movielens:
            csv_dir = movielens_csv(args.movielens, work)
            report["movielens"] = run_dataset("movielens", csv_dir, "logs.csv", work, args, True)
            print(f"[beam_features] movielens: {json.dumps(report['movielens'])}", file=sys.stderr)
        scale = []
        for rows in [int(r) for r in args.scale_rows.split(",") if r]:
            reuse = args.reuse_prepared and prepared(str(work / f"scale_{rows}" / "raw"))
            csv_dir = None if reuse else synthetic_csv(rows, work)
            point = run_dataset(
                f"scale_{rows}", csv_dir, "logs.csv", work, args, rows <= args.pandas_scale_max
            )
            scale.append({**point, "rows": rows})  # run_dataset counts rows only when pandas runs
            print(f"[beam_features] scale point: {json.dumps(scale[-1])}", file=sys.stderr)
        if scale:
            report["scale"] = scale
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_job":
        JOBS[sys.argv[2]](*json.loads(sys.argv[3]))
    else:
        main()
