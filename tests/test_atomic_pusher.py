"""AtomicPusher: versions increase, a push appears whole or not at all, unblessed models stay."""

from __future__ import annotations

import os

import pytest
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils, proto_utils

from watchnext.components.atomic_pusher import executor as pusher


def fake_saved_model(directory) -> str:
    os.makedirs(os.path.join(directory, "variables"))
    for name in ("saved_model.pb", "fingerprint.pb", os.path.join("variables", "variables.index")):
        with open(os.path.join(directory, name), "w") as handle:
            handle.write(name)
    return str(directory)


def test_versions_increase_even_within_one_second(tmp_path):
    model = fake_saved_model(tmp_path / "model")
    base = str(tmp_path / "serving")
    versions = [pusher.push_atomically(model, base, clock=lambda: 1_700_000_000) for _ in range(3)]
    assert versions == ["1700000000", "1700000001", "1700000002"]
    assert sorted(os.listdir(base)) == versions
    assert os.path.exists(os.path.join(base, versions[-1], "variables", "variables.index"))


def test_a_failed_copy_leaves_no_version_and_no_staging(tmp_path, monkeypatch):
    model = fake_saved_model(tmp_path / "model")
    base = str(tmp_path / "serving")
    real_copy = io_utils.copy_dir

    def copy_then_fail(source, destination, *args, **kwargs):
        real_copy(source, destination, *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(pusher.io_utils, "copy_dir", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        pusher.push_atomically(model, base)
    assert os.listdir(base) == []


def run_executor(tmp_path, blessed: bool):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "trainer")
    if not os.path.exists(model.uri):
        fake_saved_model(os.path.join(model.uri, "Format-Serving"))
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", int(blessed))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed" / str(len(os.listdir(tmp_path))))
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(tmp_path / "serving"))
    )
    pusher.Executor().Do(
        {"model": [model], "model_blessing": [blessing]},
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination)},
    )
    return pushed


def test_executor_pushes_a_blessed_model(tmp_path):
    pushed = run_executor(tmp_path, blessed=True)
    assert pushed.get_int_custom_property("pushed") == 1
    version = pushed.get_string_custom_property("pushed_version")
    assert os.listdir(tmp_path / "serving") == [version]


def test_the_same_model_is_not_pushed_twice_but_a_changed_one_is(tmp_path):
    first = run_executor(tmp_path, blessed=True)
    again = run_executor(tmp_path, blessed=True)
    assert os.listdir(tmp_path / "serving") == [first.get_string_custom_property("pushed_version")]
    assert again.get_string_custom_property("pushed_version") == first.get_string_custom_property(
        "pushed_version"
    )
    with open(tmp_path / "trainer" / "Format-Serving" / "fingerprint.pb", "w") as handle:
        handle.write("retrained")
    changed = run_executor(tmp_path, blessed=True)
    assert len(os.listdir(tmp_path / "serving")) == 2
    assert int(changed.get_string_custom_property("pushed_version")) > int(
        first.get_string_custom_property("pushed_version")
    )


def test_executor_does_not_push_an_unblessed_model(tmp_path):
    pushed = run_executor(tmp_path, blessed=False)
    assert pushed.get_int_custom_property("pushed") == 0
    assert not os.path.exists(tmp_path / "serving")
