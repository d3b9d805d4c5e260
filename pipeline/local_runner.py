"""Runs the pipeline locally: LocalDagRunner, Beam DirectRunner, SQLite MLMD.

After the run it reads MLMD to report, per component, whether it ran or was
reused from the cache and how long it took, where the model was pushed, and
how many raw rows were rejected.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from watchnext.components.log_example_gen import RejectedRows
from watchnext.pipeline.configs import PipelineConfig
from watchnext.pipeline.pipeline import create_pipeline

_STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: "ran",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.FAILED: "FAILED",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}


@dataclasses.dataclass(frozen=True)
class ComponentRun:
    component: str
    state: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class RunReport:
    wall_seconds: float
    components: list[ComponentRun]
    pushed_models: dict[str, str]
    rejected_rows: int | None
    rejects_uri: str | None
    anomalies: dict[str, dict[str, list[str]]] = dataclasses.field(default_factory=dict)

    def format(self) -> str:
        width = max([len("component"), *(len(c.component) for c in self.components)]) + 2
        lines = [f"{'component':<{width}}{'state':<8}{'seconds':>9}"]
        lines += [f"{c.component:<{width}}{c.state:<8}{c.seconds:>9.1f}" for c in self.components]
        lines.append(f"pipeline wall time: {self.wall_seconds:.1f} s")
        if self.rejected_rows is not None:
            lines.append(f"rejected raw rows: {self.rejected_rows} (reasons in {self.rejects_uri})")
        for validator, by_split in self.anomalies.items():
            found = {split: names for split, names in by_split.items() if names}
            lines.append(f"{validator}: {'anomalies ' + str(found) if found else 'no anomalies'}")
        for name, destination in self.pushed_models.items():
            lines.append(f"pushed model '{name}': {destination}")
        return "\n".join(lines)


def _store(config: PipelineConfig) -> metadata_store.MetadataStore:
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    return metadata_store.MetadataStore(connection)


def _latest_run(store):
    return max(store.get_contexts_by_type("pipeline_run"), key=lambda run: run.create_time_since_epoch)


def _anomalies(store, run) -> dict[str, dict[str, list[str]]]:
    """Anomaly names per component (ExampleValidator, Transform) and split, from SchemaDiff.pb files."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found: dict[str, dict[str, list[str]]] = {}
    for artifact in store.get_artifacts_by_context(run.id):
        if artifact.type != "ExampleAnomalies":
            continue
        component = artifact.uri.rstrip("/").split(os.sep)[-3]
        for directory, _, files in sorted(os.walk(artifact.uri)):
            if "SchemaDiff.pb" not in files:
                continue
            anomalies = anomalies_pb2.Anomalies()
            with open(os.path.join(directory, "SchemaDiff.pb"), "rb") as handle:
                anomalies.ParseFromString(handle.read())
            split = os.path.basename(directory).removeprefix("Split-")
            split = "all" if directory.rstrip("/") == artifact.uri.rstrip("/") else split
            found.setdefault(component, {})[split] = sorted(anomalies.anomaly_info)
    return found


def _component_name(store, execution) -> str:
    for context in store.get_contexts_by_execution(execution.id):
        if context.type == "node":
            return context.name.split(".", 1)[-1]
    return execution.name


def _pushed_models(store) -> dict[str, str]:
    """Newest push destination per model (the folder above the version directory)."""
    pushes = []
    for artifact in store.get_artifacts_by_type("PushedModel"):
        destination = artifact.custom_properties.get("pushed_destination")
        if destination is not None and destination.string_value:
            pushes.append((artifact.create_time_since_epoch, destination.string_value))
    return {os.path.basename(os.path.dirname(dest)): dest for _, dest in sorted(pushes)}


def collect_report(config: PipelineConfig, wall_seconds: float) -> RunReport:
    store = _store(config)
    run = _latest_run(store)
    executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.create_time_since_epoch)
    components = []
    for execution in executions:
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        state = _STATE_NAMES.get(execution.last_known_state, "?")
        components.append(ComponentRun(_component_name(store, execution), state, seconds))
    rejects = store.get_artifacts_by_type(RejectedRows.TYPE_NAME)
    rejected_rows = rejects_uri = None
    if rejects:
        newest = max(rejects, key=lambda a: a.create_time_since_epoch)
        rejected_rows = newest.custom_properties["rejected_rows"].int_value
        rejects_uri = newest.uri
    return RunReport(
        wall_seconds, components, _pushed_models(store), rejected_rows, rejects_uri, _anomalies(store, run)
    )


def run(config: PipelineConfig) -> RunReport:
    logging.info(
        "running pipeline %s: data %s, outputs under %s",
        config.pipeline_name,
        config.data_dir,
        config.output_dir,
    )
    started = time.monotonic()
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    return collect_report(config, time.monotonic() - started)
