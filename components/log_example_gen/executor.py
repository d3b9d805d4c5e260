"""Beam executor of LogExampleGen (what it produces: component.py; the transforms: transforms.py)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import apache_beam as beam
import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.utils import proto_utils

from watchnext.components import examples_io, tf_example
from watchnext.components.log_example_gen.transforms import (
    METRICS_NAMESPACE,
    REJECTED_COUNTER,
    ParseLine,
    SplitByHash,
    counting,
    plan_chunks,
    read_chunk,
    read_header,
    route,
)

REJECTS_FILE_PREFIX = "rejects"
SUMMARY_FILE = "summary.json"


class TooManyRejectedRows(RuntimeError):
    """More rows were malformed than the component's max_rejected_fraction allows."""


def _read_counters(result: beam.runners.runner.PipelineResult) -> dict[str, int]:
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(METRICS_NAMESPACE))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + counter.committed
    return totals


class Executor(base_beam_executor.BaseBeamExecutor):
    """Parses and validates raw-log CSV rows; writes Examples per split and the rejects."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties["output_config"], output_config)
        splitter = SplitByHash(output_config)
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        rejects = artifact_utils.get_single_instance(output_dict["rejects"])
        examples.split_names = artifact_utils.encode_split_names(splitter.names)
        paths = sorted(
            tf.io.gfile.glob(os.path.join(exec_properties["input_base"], exec_properties["input_pattern"]))
        )
        if not paths:
            raise FileNotFoundError(
                f"LogExampleGen: no file matches {exec_properties['input_pattern']!r} "
                f"in {exec_properties['input_base']}"
            )
        logging.info("LogExampleGen: reading %d file(s) from %s", len(paths), exec_properties["input_base"])
        headers = {path: read_header(path) for path in paths}

        pipeline = self._make_beam_pipeline()
        rows = (
            pipeline
            | "PlanChunks" >> beam.Create([chunk for path in paths for chunk in plan_chunks(path)])
            | "Spread" >> beam.Reshuffle()
            | "ReadChunks" >> beam.FlatMap(read_chunk)
            | "Parse" >> beam.ParDo(ParseLine(headers))
            | "Route" >> beam.FlatMap(route).with_outputs("rejected", main="parsed")
        )
        (
            rows.rejected
            | "CountRejected" >> beam.Map(counting(REJECTED_COUNTER))
            | "WriteRejects"
            >> beam.io.WriteToText(os.path.join(rejects.uri, REJECTS_FILE_PREFIX), file_name_suffix=".jsonl")
        )
        by_split = rows.parsed | "Split" >> beam.Partition(splitter, len(splitter.names))
        for index, name in enumerate(splitter.names):
            serialized = (
                by_split[index]
                | f"Count[{name}]" >> beam.Map(counting(f"rows_{name}"))
                | f"Serialize[{name}]" >> beam.Map(tf_example.serialize)
            )
            examples_io.write_split(serialized, examples, name)
        result = pipeline.run()
        result.wait_until_finish()

        counts = _read_counters(result)
        self._record(examples, rejects, splitter.names, counts, paths)
        self._check_rejected_fraction(counts, exec_properties["max_rejected_fraction"], rejects.uri)

    @staticmethod
    def _record(examples, rejects, split_names, counts, paths) -> None:
        examples_io.mark_tf_example_payload(examples)
        rejected = counts.get(REJECTED_COUNTER, 0)
        parsed = {name: counts.get(f"rows_{name}", 0) for name in split_names}
        for name, count in parsed.items():
            examples.set_int_custom_property(f"rows_{name}", count)
        rejects.set_int_custom_property("rejected_rows", rejected)
        rejects.set_int_custom_property("parsed_rows", sum(parsed.values()))
        summary = {"input_files": paths, "rows_by_split": parsed, "rejected_rows": rejected}
        with tf.io.gfile.GFile(os.path.join(rejects.uri, SUMMARY_FILE), "w") as handle:
            json.dump(summary, handle, indent=2)
        message = "LogExampleGen: %d rows parsed %s; %d rejected (reasons in %s)"
        log = logging.warning if rejected else logging.info
        log(message, sum(parsed.values()), parsed, rejected, rejects.uri)

    @staticmethod
    def _check_rejected_fraction(counts: dict[str, int], max_fraction: float, where: str) -> None:
        rejected = counts.get(REJECTED_COUNTER, 0)
        total = sum(counts.values())
        if total and rejected / total > max_fraction:
            raise TooManyRejectedRows(
                f"LogExampleGen: {rejected} of {total} rows are malformed, more than "
                f"max_rejected_fraction={max_fraction}; they are in {where}"
            )
