"""Which model versions are loaded and which one answers: discovery, polling, atomic swaps.

Layout (what the pipeline's AtomicPusher writes, and TF Serving reads):

    <model base>/<model name>/<version>/saved_model.pb, variables/, assets/

Only directories whose name is a number are versions; hidden directories (the pusher's
`.incoming-*` staging copies) and any other name are ignored. `--model-base` may also be one
model's directory (it holds version directories itself): it is then served under its basename.

Policy, per model, on start and every `poll_seconds` (a background thread):
- the newest `num_versions` versions that load are kept loaded (newest first); the default
  version (requests without /versions/N) is the newest loaded one; /versions/N reaches any
  loaded version;
- a new version is loaded and warmed up *outside* the lock while the current default keeps
  answering, and joins (and becomes the default) in one assignment under the lock; versions it
  pushes out of the newest `num_versions` are then unloaded (in-flight requests holding them
  finish normally);
- a version that fails to load (corrupt or incomplete directory, failing warm-up) is refused:
  the error is logged, shown by the status API (state END with the error), and the version is
  retried only when its directory changes; the last good version keeps serving;
- a loaded version whose directory disappears is unloaded.

States are TF Serving's (GetModelStatus): LOADING, AVAILABLE, END (refused or unloaded).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
from collections.abc import Callable

from watchnext.serving.errors import NotFound
from watchnext.serving.saved_model_version import LoadedVersion, load_version

VERSION_NAME = re.compile(r"[0-9]+", re.ASCII)
LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"

Loader = Callable[[str, int, str], LoadedVersion]


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """One version's state; `error` is set when its load was refused."""

    version: int
    state: str
    error: str = ""
    loaded: LoadedVersion | None = dataclasses.field(default=None, repr=False, compare=False)
    fingerprint: tuple = dataclasses.field(default=(), repr=False, compare=False)

    def as_json(self) -> dict:
        """TF Serving's ModelVersionStatus JSON."""
        return {
            "version": str(self.version),
            "state": self.state,
            "status": {"error_code": "UNKNOWN" if self.error else "OK", "error_message": self.error},
        }


def version_dirs(model_dir: str) -> dict[int, str]:
    """Numeric version -> path, for the version directories of `model_dir` (others ignored)."""
    try:
        entries = os.listdir(model_dir)
    except FileNotFoundError:
        return {}
    return {
        int(entry): os.path.join(model_dir, entry)
        for entry in entries
        if VERSION_NAME.fullmatch(entry) and os.path.isdir(os.path.join(model_dir, entry))
    }


def directory_fingerprint(path: str) -> tuple:
    """(relative path, size, mtime) of every file under `path`: changes when the directory does."""
    files = []
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            files.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(files))


class ModelRegistry:
    """Loaded versions of every model under `model_base`, kept current by a poller thread."""

    def __init__(
        self,
        model_base: str,
        poll_seconds: float = 5.0,
        num_versions: int = 2,
        loader: Loader | None = None,
    ):
        if num_versions < 1:
            raise ValueError("num_versions must be at least 1")
        self.model_base = os.path.abspath(model_base)
        self.poll_seconds = poll_seconds
        self.num_versions = num_versions
        self._loader: Loader = loader or load_version
        self._lock = threading.Lock()
        self._models: dict[str, dict[int, VersionStatus]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll_lock = threading.Lock()  # one poll at a time (thread and explicit poll_once calls)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> ModelRegistry:
        """Loads what is there now (synchronously), then polls in a daemon thread."""
        self.poll_once()
        if self.poll_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._poll_loop, name="model-poller", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the poller must survive anything a directory does
                logging.exception("model poll of %s failed", self.model_base)

    # --- polling ---------------------------------------------------------------------------

    def model_dirs(self) -> dict[str, str]:
        """Model name -> directory."""
        if version_dirs(self.model_base):
            return {os.path.basename(self.model_base.rstrip(os.sep)): self.model_base}
        try:
            entries = sorted(os.listdir(self.model_base))
        except FileNotFoundError:
            return {}
        return {
            entry: os.path.join(self.model_base, entry)
            for entry in entries
            if not entry.startswith(".") and os.path.isdir(os.path.join(self.model_base, entry))
        }

    def poll_once(self) -> None:
        """One discovery pass over every model (see the module docstring for the policy)."""
        with self._poll_lock:
            for name, model_dir in self.model_dirs().items():
                self._poll_model(name, model_dir)

    def _set(self, name: str, status: VersionStatus) -> None:
        with self._lock:
            self._models.setdefault(name, {})[status.version] = status

    def _current(self, name: str, version: int) -> VersionStatus | None:
        with self._lock:
            return self._models.get(name, {}).get(version)

    def _poll_model(self, name: str, model_dir: str) -> None:
        on_disk = version_dirs(model_dir)
        keep: list[int] = []
        for version in sorted(on_disk, reverse=True):
            if len(keep) >= self.num_versions:
                break
            current = self._current(name, version)
            if current is not None and current.loaded is not None:
                keep.append(version)
                continue
            fingerprint = directory_fingerprint(on_disk[version])
            if current is not None and current.error and current.fingerprint == fingerprint:
                continue  # refused before and unchanged since
            if self._load(name, version, on_disk[version], fingerprint):
                keep.append(version)
        with self._lock:
            versions = self._models.setdefault(name, {})
            for version, status in list(versions.items()):
                if version not in on_disk and status.loaded is None:
                    del versions[version]  # gone from disk: forget refusals and unloads
                elif status.loaded is not None and version not in keep:
                    versions[version] = VersionStatus(version, END)
                    reason = "its directory is gone" if version not in on_disk else "newer versions serve"
                    logging.info("%s version %s unloaded (%s)", name, version, reason)

    def _load(self, name: str, version: int, path: str, fingerprint: tuple) -> bool:
        serving = self.default_version(name)
        self._set(name, VersionStatus(version, LOADING))
        logging.info("%s version %s: loading %s", name, version, path)
        try:
            loaded = self._loader(name, version, path)
        except Exception as error:  # noqa: BLE001 - any failure refuses the version
            message = f"{type(error).__name__}: {error}".strip()
            logging.error(
                "%s version %s refused, %s: %s",
                name,
                version,
                f"still serving version {serving}" if serving is not None else "no version serves",
                message,
            )
            self._set(name, VersionStatus(version, END, error=message, fingerprint=fingerprint))
            return False
        self._set(name, VersionStatus(version, AVAILABLE, loaded=loaded, fingerprint=fingerprint))
        logging.info(
            "%s version %s: available (default: version %s)", name, version, self.default_version(name)
        )
        return True

    # --- queries (any thread) --------------------------------------------------------------

    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def default_version(self, name: str) -> int | None:
        with self._lock:
            loaded = [v for v, s in self._models.get(name, {}).items() if s.loaded is not None]
        return max(loaded) if loaded else None

    def get(self, name: str, version: int | None = None) -> LoadedVersion:
        """The servable for `name` (its default version, or `version`); NotFound (HTTP 404) if none."""
        with self._lock:
            versions = self._models.get(name, {})
            if version is None:
                loaded = [s.loaded for s in versions.values() if s.loaded is not None]
                if loaded:
                    return max(loaded, key=lambda v: v.version)
                raise NotFound(f"Servable not found for request: Latest({name})")
            status = versions.get(version)
            if status is not None and status.loaded is not None:
                return status.loaded
        raise NotFound(f"Servable not found for request: Specific({name}, {version})")

    def status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """Statuses of `name`'s versions, newest first (or of `version`); NotFound if none."""
        with self._lock:
            versions = dict(self._models.get(name, {}))
        if version is not None:
            if version not in versions:
                raise NotFound(f"Could not find version {version} of model {name}")
            return [versions[version]]
        if not versions:
            raise NotFound(f"Could not find any versions of model {name}")
        return [versions[v] for v in sorted(versions, reverse=True)]
