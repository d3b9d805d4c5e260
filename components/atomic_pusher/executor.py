"""Executor of AtomicPusher: copy aside, then rename into a new version directory.

A model server (TF Serving, `watchnext serve`) loads numeric directories
under the base directory and ignores others, so the copy goes to a hidden
`.incoming-<version>-<random>` directory first and is renamed to `<version>`
when complete; a rename within one filesystem is atomic. Versions are
increasing integers: the current Unix time, or the last version + 1 if that
is not larger (two pushes in one second).

A model identical to the newest pushed version (same SavedModel
`fingerprint.pb`) is not pushed again: re-running a pipeline whose Trainer
was cached re-blesses the same model, and a server needs no new version.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

STAGING_PREFIX = ".incoming-"


def existing_versions(base_directory: str) -> list[int]:
    if not fileio.exists(base_directory):
        return []
    return sorted(int(name) for name in fileio.listdir(base_directory) if name.strip("/").isdigit())


def next_version(base_directory: str, clock: Callable[[], float] = time.time) -> int:
    versions = existing_versions(base_directory)
    return max(int(clock()), versions[-1] + 1 if versions else 0)


FINGERPRINT_FILE = "fingerprint.pb"


def _fingerprint(model_path: str) -> bytes | None:
    path = os.path.join(model_path, FINGERPRINT_FILE)
    return io_utils.read_bytes_file(path) if fileio.exists(path) else None


def already_pushed(model_path: str, base_directory: str) -> str | None:
    """The newest version if it holds the same SavedModel (by fingerprint), else None."""
    versions = existing_versions(base_directory)
    fingerprint = _fingerprint(model_path)
    if not versions or fingerprint is None:
        return None
    newest = str(versions[-1])
    return newest if _fingerprint(os.path.join(base_directory, newest)) == fingerprint else None


def push_atomically(model_path: str, base_directory: str, clock: Callable[[], float] = time.time) -> str:
    """Copies the SavedModel at `model_path` to `base_directory/<new version>`; returns the version."""
    fileio.makedirs(base_directory)
    version = str(next_version(base_directory, clock))
    staging = os.path.join(base_directory, f"{STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    try:
        io_utils.copy_dir(model_path, staging)
        fileio.rename(staging, os.path.join(base_directory, version), overwrite=False)
    except BaseException:
        if fileio.exists(staging):
            fileio.rmtree(staging)
        raise
    return version


class Executor(pusher_executor.Executor):
    """Pushes a blessed model to a filesystem destination atomically (see the module docstring)."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            logging.info("AtomicPusher: model not blessed, nothing pushed")
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("AtomicPusher pushes to a filesystem destination only")
        model_path = self.GetModelPath(input_dict)
        base = destination.filesystem.base_directory
        version = already_pushed(model_path, base)
        if version is not None:
            logging.info("AtomicPusher: %s already serves this model (version %s)", base, version)
        else:
            version = push_atomically(model_path, base)
        serving_path = os.path.join(base, version)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
        logging.info("AtomicPusher: model pushed to %s", serving_path)
