"""The LogExampleGen TFX component (spec and constructor).

Reads raw-log CSV files (header line, then one impression per line; see
`schemas/raw_log/schema.pbtxt`), validates every row against the raw-log
schema and writes:
  examples  standard TFX Examples (gzipped TFRecords of tf.Example, one folder
            per split), so StatisticsGen, SchemaGen and Transform work unchanged;
  rejects   every malformed row as a JSON line {file, line_number, reason,
            raw_line}, plus `summary.json` with the counts.
The run fails only if more than `max_rejected_fraction` of the rows are bad
(after writing the rejects, so nothing is lost).

Example:
    gen = LogExampleGen(input_base="/data/logs")
    StatisticsGen(examples=gen.outputs["examples"])
"""

from __future__ import annotations

import hashlib
import os

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from watchnext.components.log_example_gen import executor
from watchnext.models import features

DEFAULT_INPUT_PATTERN = "*.csv"


class RejectedRows(types.Artifact):
    """Raw-log rows set aside by LogExampleGen, each with its file, line and reason."""

    TYPE_NAME = "watchnext.RejectedRows"  # "<namespace>.<Name>": the form Kubeflow V2 accepts


def default_output_config() -> example_gen_pb2.Output:
    """Two thirds of the feed requests train, one third evaluate (split by request id).

    A request's impressions stay together, and a user appears in both splits,
    as a model is evaluated on held-out requests of the users it serves. Rows
    without a request id (MovieLens) are split one by one.
    """
    return example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=2),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
            ],
            partition_feature_name=features.REQUEST_ID,
        )
    )


def fingerprint_inputs(input_base: str, input_pattern: str) -> str:
    """Names, sizes and modification times of the input files, hashed.

    An exec property, so that MLMD's cache is reused only while the files are
    unchanged. Remote inputs (gs://, s3://, ...) are not listed when the
    pipeline is built (compiling for Kubeflow must not need the bucket): there
    the cache keys on the path, so give each new batch of logs its own path
    (e.g. a date folder) or disable caching.
    """
    import tensorflow as tf

    if "://" in input_base:
        return f"remote input {input_base}, not listed at compile time"

    paths = sorted(tf.io.gfile.glob(os.path.join(input_base, input_pattern)))
    digest = hashlib.sha256()
    for path in paths:
        stat = tf.io.gfile.stat(path)
        digest.update(f"{path}\0{stat.length}\0{stat.mtime_nsec}\n".encode())
    return f"{len(paths)} files, sha256 {digest.hexdigest()}"


class LogExampleGenSpec(types.ComponentSpec):
    PARAMETERS = {
        "input_base": ExecutionParameter(type=str),
        "input_pattern": ExecutionParameter(type=str),
        "input_fingerprint": ExecutionParameter(type=str),
        "output_config": ExecutionParameter(type=example_gen_pb2.Output),
        "max_rejected_fraction": ExecutionParameter(type=float),
    }
    INPUTS = {}
    OUTPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "rejects": ChannelParameter(type=RejectedRows),
    }


class LogExampleGen(base_beam_component.BaseBeamComponent):
    """Validated raw-log Examples from CSV files, with malformed rows set aside."""

    SPEC_CLASS = LogExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        input_base: str,
        input_pattern: str = DEFAULT_INPUT_PATTERN,
        output_config: example_gen_pb2.Output | None = None,
        max_rejected_fraction: float = 0.1,
    ):
        spec = LogExampleGenSpec(
            input_base=input_base,
            input_pattern=input_pattern,
            input_fingerprint=fingerprint_inputs(input_base, input_pattern),
            output_config=output_config or default_output_config(),
            max_rejected_fraction=max_rejected_fraction,
            examples=types.Channel(type=standard_artifacts.Examples),
            rejects=types.Channel(type=RejectedRows),
        )
        super().__init__(spec=spec)
