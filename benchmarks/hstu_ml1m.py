"""MovieLens-1M retrieval quality of SASRec, HSTU and HSTU-large (public HSTU protocol); prints JSON.

Protocol (methods.md section 3; meta-recsys/generative-recommenders configs of 2024-04):
per-user sequences in time order, max length 200, leave-one-out (train on each sequence minus
its last item with next-item prediction at every position; test: the most recent 200 items
before the last one -> the last item), full ranking over all items except the ones in that
history (as the reference code evaluates: models/hstu/retrieval.py, RANKINGS), HR@K and NDCG@K
for K = 10, 50, 200; the same metrics over all items, seen ones included, are reported beside.
Model: item embedding 50, dropout 0.2, L2-normalized user and item vectors, sampled softmax
with 128 uniform random negatives per position, temperature 0.05, accidental hits removed,
Adam lr 1e-3 (betas 0.9, 0.98), batch 128, 101 epochs. Configs: SASRec (2 blocks, 1 head,
ffn 50), HSTU (2 blocks, 1 head, dqk = dv = 50), HSTU-large (8 blocks, 2 heads, dqk = dv = 25).
See models/hstu/retrieval.py for the loss and metric definitions.

Data: --data, else ../shared/data/ml-1m-sasrec/ml-1m.txt (SASRec preprocessing: 6,040 users,
3,416 items with >= 5 ratings, the file order is the time order) if present, else
../shared/data/ml-1m/ratings*.dat (each user's ratings sorted by (timestamp, movie id)). The
paper's numbers were produced on the raw ratings.dat (3,706 items); the SASRec file drops rare
items, so numbers are close but not strictly comparable.

Per config the JSON holds: the six metrics ("metrics": history excluded, the protocol's;
"metrics_all_items": seen items ranked too) and the paper's numbers; epochs done (training stops
once --max-minutes-per-config is spent and the model is evaluated as it is); train steps; seconds
per step (median, the first, compiling step excluded) and an estimate of one epoch's time on the
whole data file (steps of a full epoch x seconds per step); the loss history; wall time, over all
runs of a resumed config and of this run alone. Then the gain of HSTU-large over our SASRec (and
the paper's gain), under both rankings. Progress goes to stderr.

Examples:
    python benchmarks/hstu_ml1m.py                                   # full run (hours on 2 cores)
    python benchmarks/hstu_ml1m.py --users 300 --epochs 1            # smoke run
    python benchmarks/hstu_ml1m.py --configs hstu --epochs 101 --max-minutes-per-config 120
    python benchmarks/hstu_ml1m.py --negative-sharing sequence --epochs 50   # what fits on 2 cores

Resumable: with --checkpoint-dir every config saves its model and optimizer state (Adam moments,
random-seed states) and its records after each epoch, and a finished config its result; the same
command run again continues where the last one stopped (the data order is replayed, so a resumed
run trains exactly as an uninterrupted one). A folder serves only the same training options
(options.json) and, per config, the same model: every layer's configuration (model.json; e.g. an
initializer or a layer option changed in the code since the checkpoint was written is refused,
not resumed). --stop-after-minutes ends a run cleanly at an epoch boundary, so the full protocol
(hours on 2 cores) can be spread over several sittings:
    python benchmarks/hstu_ml1m.py --checkpoint-dir runs/ml1m --stop-after-minutes 100   # repeat

`--negative-sharing sequence` (one set of 128 negatives per sequence, not per position) is the
practical choice on CPU: HSTU steps take 0.30 s instead of 0.81 s, and after the same 4 minutes
of training HSTU reaches HR@10 0.156 against 0.089 with per-position negatives ("batch", one set
for the whole batch: 0.092).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from watchnext.models.hstu.encoder import CONFIGS
from watchnext.models.hstu.retrieval import (
    DEFAULT_KS,
    NEGATIVE_SHARING,
    NEGATIVE_SOURCES,
    RetrievalConfig,
    SequentialRetrievalModel,
    full_ranking_ranks,
    leave_one_out_split,
    load_sequences,
    metrics_from_ranks,
)

REPO = Path(__file__).resolve().parents[1]
DATA_CANDIDATES = [
    REPO.parent / "shared/data/ml-1m-sasrec/ml-1m.txt",
    REPO.parent / "shared/data/ml-1m/ratings.dat",
    REPO.parent / "shared/data/ml-1m/ratings_PARTIAL_first487650lines_users1-2999.dat",
]

METRIC_NAMES = ("HR@10", "NDCG@10", "HR@50", "NDCG@50", "HR@200", "NDCG@200")
PAPER = {  # Zhai et al. 2024 (ML-1M; methods.md section 3), METRIC_NAMES order
    "sasrec": dict(zip(METRIC_NAMES, (0.2853, 0.1603, 0.5474, 0.2185, 0.7528, 0.2498), strict=True)),
    "hstu": dict(zip(METRIC_NAMES, (0.3097, 0.1720, 0.5754, 0.2307, 0.7716, 0.2606), strict=True)),
    "hstu_large": dict(zip(METRIC_NAMES, (0.3294, 0.1893, 0.5935, 0.2481, 0.7839, 0.2771), strict=True)),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs", default="sasrec,hstu,hstu_large", help=f"comma-separated, of {list(CONFIGS)}"
    )
    parser.add_argument("--epochs", type=int, default=101)
    parser.add_argument(
        "--max-minutes-per-config",
        type=float,
        default=0.0,
        help="training time budget per config (0 = none); training stops after the step that exceeds it",
    )
    parser.add_argument(
        "--data", default=None, help="ml-1m.txt (user item) or ratings.dat; default: see above"
    )
    parser.add_argument("--users", type=int, default=0, help="use only the first N users by id (0 = all)")
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-negatives", type=int, default=128)
    parser.add_argument("--negatives", default="random", choices=NEGATIVE_SOURCES)
    parser.add_argument("--negative-sharing", default="position", choices=NEGATIVE_SHARING)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=None, help="override the configs' dropout (0.2)")
    parser.add_argument("--stochastic-length", action="store_true", help="HSTU Stochastic Length (off)")
    parser.add_argument("--sl-alpha", type=float, default=1.7)
    parser.add_argument(
        "--jit", action=argparse.BooleanOptionalAction, default=True, help="XLA train step (jit_compile=True)"
    )
    parser.add_argument(
        "--eval-every", type=int, default=0, help="also evaluate every N epochs (0 = end only)"
    )
    parser.add_argument("--eval-batch-size", type=int, default=512)
    parser.add_argument(
        "--log-every-steps", type=int, default=0, help="progress line every N steps (0 = per epoch)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint-dir",
        default=None,
        help="save each config's training state every epoch here and resume from it (default: none)",
    )
    parser.add_argument(
        "--stop-after-minutes",
        type=float,
        default=0.0,
        help="with --checkpoint-dir: end this run at the first epoch boundary after N minutes; "
        "run the same command again to continue (0 = run to the end)",
    )
    args = parser.parse_args(argv)
    if args.stop_after_minutes > 0 and not args.checkpoint_dir:
        parser.error("--stop-after-minutes needs --checkpoint-dir (nothing could be resumed)")
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def headline(metrics: dict[str, Any]) -> str:
    """HR@10 / NDCG@10 of `evaluate_both_rankings` output, as a progress line reads them."""
    everything = metrics["all_items"]
    return (
        f"HR@10 {metrics['HR@10']:.4f} NDCG@10 {metrics['NDCG@10']:.4f} (history excluded); "
        f"all items: HR@10 {everything['HR@10']:.4f} NDCG@10 {everything['NDCG@10']:.4f}"
    )


def resolve_data(path: str | None) -> Path:
    if path:
        return Path(path)
    for candidate in DATA_CANDIDATES:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no MovieLens-1M file found in {[str(c) for c in DATA_CANDIDATES]}; pass --data")


CHECKPOINT_FILE = "state.npz"
RESULT_FILE = "result.json"
OPTIONS_FILE = "options.json"
MODEL_FILE = "model.json"
# Options that do not change what is trained; they may differ between the runs of one checkpoint.
RUN_CONTROL_OPTIONS = (
    "configs", "checkpoint_dir", "stop_after_minutes", "log_every_steps", "eval_batch_size", "eval_every",
)  # fmt: skip


def open_checkpoint_dir(args: argparse.Namespace) -> Path | None:
    """The checkpoint folder, after checking it belongs to a run with the same training options."""
    if not args.checkpoint_dir:
        return None
    root = Path(args.checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    options = json.loads(json.dumps({k: v for k, v in vars(args).items() if k not in RUN_CONTROL_OPTIONS}))
    path = root / OPTIONS_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        differing = {k: {"saved": saved.get(k), "now": v} for k, v in options.items() if saved.get(k) != v}
        if differing:
            raise SystemExit(
                f"{root} holds a run with other training options {differing}; "
                "pass the same options or another --checkpoint-dir"
            )
    else:
        path.write_text(json.dumps(options, indent=2) + "\n")
    return root


def layer_configs(model: keras.Model) -> list[dict[str, Any]]:
    """Class and configuration (name left out) of every layer inside `model`, in build order, as JSON.

    Names are left out because Keras numbers unnamed layers per process; the order is fixed by the
    model's code.
    """
    configs = []
    for layer in model._flatten_layers(include_self=False):
        config = {key: value for key, value in layer.get_config().items() if key != "name"}
        configs.append({"class": type(layer).__name__, "config": config})
    return json.loads(json.dumps(configs, sort_keys=True, default=str))


def config_difference(saved: dict[str, Any], current: dict[str, Any]) -> str:
    """'key saved -> now' for each differing configuration value of one layer."""
    if saved.get("class") != current.get("class"):
        return f"class {saved.get('class')} -> {current['class']}"
    before, now = saved.get("config", {}), current["config"]
    keys = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    return ", ".join(f"{k} {before.get(k)} -> {now.get(k)}" for k in keys)


def check_model_matches(config_dir: Path, model: keras.Model) -> None:
    """Refuse to resume `config_dir` with a model whose layers are configured differently.

    A checkpoint from before model.json existed gets one written from the current model.
    """
    path = config_dir / MODEL_FILE
    current = layer_configs(model)
    if not path.exists():
        path.write_text(json.dumps(current, indent=1) + "\n")
        return
    saved = json.loads(path.read_text())
    differing = [
        f"layer {i} ({now['class']}): {config_difference(before, now)}"
        for i, (before, now) in enumerate(zip(saved, current, strict=False))
        if before != now
    ]
    if len(saved) != len(current):
        differing.append(f"{len(saved)} layers saved, {len(current)} now")
    if differing:
        raise SystemExit(
            f"{config_dir} was trained with another model ({'; '.join(differing[:3])}); "
            "use another --checkpoint-dir, or move this config's folder aside to start it again"
        )


def save_training_state(path: Path, model: keras.Model, records: dict[str, Any]) -> None:
    """All model variables (seed states included), the optimizer's, and `records`, in one npz file.

    Written to a temporary file and renamed, so a run killed while saving keeps the last state.
    """
    arrays = {f"model_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.variables)}
    arrays.update(
        {f"optimizer_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)}
    )
    temporary = path.with_name(f"{path.stem}.tmp.npz")
    np.savez(temporary, records=np.array(json.dumps(records)), **arrays)
    os.replace(temporary, path)


def restore_training_state(path: Path, model: keras.Model) -> dict[str, Any]:
    """Load what `save_training_state` wrote into a built, compiled model; returns the records."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    with np.load(path) as saved:
        for prefix, variables in (("model", model.variables), ("optimizer", model.optimizer.variables)):
            count = sum(1 for key in saved.files if key.startswith(f"{prefix}_"))
            if count != len(variables):
                raise SystemExit(f"{path}: {count} saved {prefix} variables, the model has {len(variables)}")
            for i, variable in enumerate(variables):
                value = saved[f"{prefix}_{i}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise SystemExit(
                        f"{path}: {prefix} variable {i} ({variable.path}) has shape {tuple(variable.shape)}, "
                        f"saved {tuple(value.shape)}"
                    )
                variable.assign(value)
        return json.loads(str(saved["records"]))


class TrainingMonitor(keras.callbacks.Callback):
    """Step timing, loss history, progress lines, the time budgets and periodic evaluation.

    `restored` (records of an earlier run of the same config) continues its histories and time;
    past `deadline` (time.monotonic()) training pauses at the next epoch boundary. Wall time
    counts from `run_start` (time.perf_counter(); default: now) and adds the earlier runs'.
    """

    def __init__(
        self,
        name: str,
        epochs: int,
        steps_per_epoch: int,
        budget_s: float,
        log_every: int,
        evaluate: Any = None,
        eval_every: int = 0,
        restored: dict[str, Any] | None = None,
        deadline: float | None = None,
        run_start: float | None = None,
    ) -> None:
        super().__init__()
        self.name, self.epochs, self.steps_per_epoch = name, epochs, steps_per_epoch
        self.budget_s, self.log_every = budget_s, log_every
        self.evaluate, self.eval_every = evaluate, eval_every
        self.deadline = deadline
        restored = restored or {}
        self.step_times: list[float] = restored.get("step_times", [])
        # Index of each run's first step, which includes tracing and compiling.
        self.first_steps: list[int] = restored.get("first_steps", []) + [len(self.step_times)]
        self.loss_history: list[float] = restored.get("loss_history", [])
        self.eval_history: list[dict[str, Any]] = restored.get("eval_history", [])
        self.epochs_completed = restored.get("epochs_completed", 0)
        self.earlier_train_seconds = restored.get("train_seconds", 0.0)
        self.earlier_eval_seconds = restored.get("eval_seconds", 0.0)
        # Records from before wall time was kept: their training + evaluation time stands in.
        self.earlier_wall_seconds = restored.get(
            "wall_seconds", self.earlier_train_seconds + self.earlier_eval_seconds
        )
        self.run_start = time.perf_counter() if run_start is None else run_start
        self.runs = restored.get("runs", 0) + 1
        self.steps_in_last_epoch = 0
        self.stopped_by_budget = False
        self.paused = False
        self.train_seconds = self.earlier_train_seconds
        self.eval_seconds = 0.0
        self.start = time.perf_counter()

    def on_train_begin(self, logs: Any = None) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        """Training seconds of this config over all runs (evaluation excluded)."""
        return self.earlier_train_seconds + time.perf_counter() - self.start - self.eval_seconds

    def records(self) -> dict[str, Any]:
        """What a resumed run needs to continue the histories (see `restored`)."""
        return {
            "epochs_completed": self.epochs_completed,
            "step_times": self.step_times,
            "first_steps": self.first_steps,
            "loss_history": self.loss_history,
            "eval_history": self.eval_history,
            "train_seconds": self.elapsed(),
            "eval_seconds": self.earlier_eval_seconds + self.eval_seconds,
            "wall_seconds": self.wall_seconds(),
            "runs": self.runs,
        }

    def wall_seconds(self) -> float:
        """Wall time of this config over all runs, from its model build on (data loading excluded)."""
        return self.earlier_wall_seconds + time.perf_counter() - self.run_start

    def steady_step_times(self) -> list[float]:
        first = set(self.first_steps)
        return [t for i, t in enumerate(self.step_times) if i not in first]

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.steps_in_last_epoch = 0

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.step_start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        loss = float(logs["loss"]) if logs and "loss" in logs else float("nan")  # syncs the step
        self.step_times.append(time.perf_counter() - self.step_start)
        self.steps_in_last_epoch += 1
        total = len(self.step_times)
        if self.log_every and total % self.log_every == 0:
            progress(
                f"[{self.name}] step {total} (epoch {self.epochs_completed + 1}, "
                f"{self.steps_in_last_epoch}/{self.steps_per_epoch}) loss {loss:.4f} "
                f"elapsed {self.elapsed():.1f}s step {self.step_times[-1]:.2f}s"
            )
        if self.budget_s > 0 and self.elapsed() > self.budget_s and not self.stopped_by_budget:
            self.stopped_by_budget = True
            self.model.stop_training = True
            progress(
                f"[{self.name}] time budget {self.budget_s / 60:.2f} min spent after {total} steps "
                f"({self.epochs_completed} full epochs + {self.steps_in_last_epoch}/{self.steps_per_epoch})"
            )

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.steps_in_last_epoch == self.steps_per_epoch:
            self.epochs_completed += 1
        loss = float((logs or {}).get("loss", float("nan")))
        self.loss_history.append(round(loss, 5))
        progress(
            f"[{self.name}] epoch {epoch + 1}/{self.epochs} loss {loss:.4f} elapsed {self.elapsed():.1f}s"
        )
        if self.evaluate is not None and self.eval_every and (epoch + 1) % self.eval_every == 0:
            start = time.perf_counter()
            metrics = self.evaluate()
            self.eval_seconds += time.perf_counter() - start
            self.eval_history.append({"epoch": epoch + 1, **metrics})
            progress(f"[{self.name}] epoch {epoch + 1} {headline(metrics)}")
        last_epoch = epoch + 1 >= self.epochs or self.stopped_by_budget
        if self.deadline is not None and time.monotonic() > self.deadline and not last_epoch:
            self.paused = True
            self.model.stop_training = True
            progress(f"[{self.name}] pausing after epoch {epoch + 1}: --stop-after-minutes is spent")

    def on_train_end(self, logs: Any = None) -> None:
        self.train_seconds = self.elapsed()

    @property
    def full_epoch_ended(self) -> bool:
        return self.steps_in_last_epoch == self.steps_per_epoch

    @property
    def epochs_done(self) -> float:
        partial = 0 if self.steps_in_last_epoch in (0, self.steps_per_epoch) else self.steps_in_last_epoch
        return self.epochs_completed + partial / max(self.steps_per_epoch, 1)


class EpochCheckpoint(keras.callbacks.Callback):
    """After each full epoch, `save_training_state` with the monitor's records (runs after it)."""

    def __init__(self, path: Path, monitor: TrainingMonitor) -> None:
        super().__init__()
        self.path, self.monitor = path, monitor

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.monitor.full_epoch_ended:
            save_training_state(self.path, self.model, self.monitor.records())


def rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        k: round(v, 4) if isinstance(v, float) else rounded(v) if isinstance(v, dict) else v
        for k, v in metrics.items()
    }


def evaluate_both_rankings(model: keras.Model, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The protocol's metrics (history excluded), with the all-items ones under "all_items"."""
    ranks = full_ranking_ranks(
        model, data.test_histories, data.test_targets, batch_size=args.eval_batch_size, jit_compile=args.jit
    )
    return {
        **metrics_from_ranks(ranks["history_excluded"], DEFAULT_KS),
        "all_items": metrics_from_ranks(ranks["all_items"], DEFAULT_KS),
    }


def from_all_items_only_records(records: dict[str, Any]) -> dict[str, Any]:
    """Records saved before both rankings were evaluated: their evaluations ranked all items."""
    records["eval_history"] = [
        e
        if "all_items" in e
        else {"epoch": e["epoch"], "all_items": {k: v for k, v in e.items() if k != "epoch"}}
        for e in records.get("eval_history", [])
    ]
    return records


def add_history_excluded_metrics(result: dict[str, Any], model: keras.Model, data: Any, args: Any) -> None:
    """Bring a finished result from before both rankings were evaluated up to date, in place.

    Its "metrics" ranked all items; the model (its final state) is evaluated again.
    """
    metrics = evaluate_both_rankings(model, data, args)
    differing = {k: v for k, v in metrics["all_items"].items() if abs(v - result["metrics"][k]) > 2e-4}
    if differing:
        raise SystemExit(
            f"the saved final state gives {differing}, not the saved metrics {result['metrics']}"
        )
    result["metrics_all_items"] = result["metrics"]
    result["metrics"] = rounded({k: v for k, v in metrics.items() if k != "all_items"})
    from_all_items_only_records(result)


def run_config(
    name: str,
    data: Any,
    args: argparse.Namespace,
    full_steps_per_epoch: int,
    checkpoint_root: Path | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Train and evaluate one config; with `checkpoint_root`, resume it or reuse its finished result."""
    config_dir = None if checkpoint_root is None else checkpoint_root / name
    finished = None
    if config_dir is not None and (config_dir / RESULT_FILE).exists():
        progress(f"[{name}] finished in an earlier run: reusing {config_dir / RESULT_FILE}")
        finished = json.loads((config_dir / RESULT_FILE).read_text())
        if "metrics_all_items" in finished or not (config_dir / CHECKPOINT_FILE).exists():
            return finished  # (without its final state, an all-items-only result stays as it is)
    wall_start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    encoder_config = CONFIGS[name]
    encoder_config = dataclasses.replace(
        encoder_config,
        max_len=args.max_len,
        **({} if args.dropout is None else {"dropout": args.dropout}),
    )
    retrieval_config = RetrievalConfig(
        temperature=args.temperature,
        num_negatives=args.num_negatives,
        negatives=args.negatives,
        negative_sharing=args.negative_sharing,
        stochastic_length=args.stochastic_length,
        stochastic_length_alpha=args.sl_alpha,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        jit_compile=args.jit,
    )
    model = SequentialRetrievalModel(
        data.num_items, encoder_config, retrieval_config, name=f"{name}_retrieval"
    )
    model.build()
    model.compile()
    if config_dir is not None:
        config_dir.mkdir(parents=True, exist_ok=True)
        check_model_matches(config_dir, model)
    dataset = data.train_dataset(retrieval_config)
    restored = None
    if config_dir is not None and (config_dir / CHECKPOINT_FILE).exists():
        restored = from_all_items_only_records(restore_training_state(config_dir / CHECKPOINT_FILE, model))
        if finished is not None:
            progress(f"[{name}] its result ranked all items only: evaluating its final state both ways")
            add_history_excluded_metrics(finished, model, data, args)
            (config_dir / RESULT_FILE).write_text(json.dumps(finished, indent=2) + "\n")
            return finished
        for _ in range(restored["epochs_completed"]):  # replay the shuffles of the epochs done
            dataset.on_epoch_end()
        progress(f"[{name}] resuming after epoch {restored['epochs_completed']} from {config_dir}")

    def evaluate() -> dict[str, Any]:
        return evaluate_both_rankings(model, data, args)

    monitor = TrainingMonitor(
        name,
        args.epochs,
        len(dataset),
        args.max_minutes_per_config * 60.0,
        args.log_every_steps,
        evaluate,
        args.eval_every,
        restored=restored,
        deadline=deadline,
        run_start=wall_start,
    )
    callbacks: list[keras.callbacks.Callback] = [monitor]
    if config_dir is not None:
        callbacks.append(EpochCheckpoint(config_dir / CHECKPOINT_FILE, monitor))
    progress(f"[{name}] {model.count_params()} params; {len(dataset)} steps/epoch, {args.epochs} epochs")
    initial_epoch = monitor.epochs_completed
    if args.epochs > initial_epoch:
        # The dataset reshuffles itself each epoch from its own seed; Keras' batch-order shuffle on
        # top would draw from the global random state, which a resumed run cannot replay.
        model.fit(
            dataset,
            epochs=args.epochs,
            initial_epoch=initial_epoch,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        )
    if monitor.paused:
        return {
            "status": "paused",
            "epochs_completed": monitor.epochs_completed,
            "train_seconds": round(monitor.train_seconds, 1),
            "wall_seconds": round(monitor.wall_seconds(), 1),
            "eval_history": [rounded(e) for e in monitor.eval_history],
            "checkpoint": str(config_dir / CHECKPOINT_FILE),
        }
    eval_start = time.perf_counter()
    metrics = evaluate()
    eval_seconds = time.perf_counter() - eval_start
    progress(f"[{name}] final {headline(metrics)} ({eval_seconds:.1f}s)")
    steady = monitor.steady_step_times()
    seconds_per_step = statistics.median(steady) if steady else None
    result = {
        "status": "finished",
        "metrics": rounded({k: v for k, v in metrics.items() if k != "all_items"}),
        "metrics_all_items": rounded(metrics["all_items"]),
        "paper": PAPER.get(name),
        "encoder_config": dataclasses.asdict(encoder_config),
        "params": int(model.count_params()),
        "epochs_requested": args.epochs,
        "epochs_completed": monitor.epochs_completed,
        "epochs_done": round(monitor.epochs_done, 3),
        "stopped_by_time_budget": monitor.stopped_by_budget,
        "train_steps": len(monitor.step_times),
        "steps_per_epoch": len(dataset),
        "first_step_seconds": round(monitor.step_times[0], 2) if monitor.step_times else None,
        "seconds_per_step": None if seconds_per_step is None else round(seconds_per_step, 3),
        "estimated_seconds_per_full_epoch": (
            None if seconds_per_step is None else round(seconds_per_step * full_steps_per_epoch, 1)
        ),
        "loss_history": monitor.loss_history,
        "eval_history": [rounded(e) for e in monitor.eval_history],
        "train_seconds": round(monitor.train_seconds, 1),
        "eval_seconds": round(eval_seconds + monitor.earlier_eval_seconds + monitor.eval_seconds, 1),
        "runs": monitor.runs,
        "wall_seconds": round(monitor.wall_seconds(), 1),
        "wall_seconds_this_run": round(time.perf_counter() - wall_start, 1),
    }
    if config_dir is not None:
        (config_dir / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result


def relative_gain(new: dict[str, float], base: dict[str, float]) -> dict[str, float | None]:
    return {k: (round(new[k] / base[k] - 1.0, 4) if base.get(k) else None) for k in new if k in base}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    path = resolve_data(args.data)
    args.data = str(path)  # the file actually read: part of a checkpoint's training options
    progress(f"loading {path}")
    sequences = load_sequences(path)
    users_in_file = len(sequences)
    full_train_users = sum(1 for s in sequences.values() if len(s) >= 3)
    full_steps_per_epoch = math.ceil(full_train_users / args.batch_size)
    if args.users > 0:
        sequences = dict(list(sequences.items())[: args.users])
    data = leave_one_out_split(sequences, max_len=args.max_len)
    progress(
        f"{len(data.test_targets)} users, {data.num_items} items, {len(data.train_windows)} training "
        f"sequences, {data.num_train_tokens} training positions"
    )
    checkpoint_root = open_checkpoint_dir(args)
    deadline = time.monotonic() + 60.0 * args.stop_after_minutes if args.stop_after_minutes > 0 else None
    results: dict[str, Any] = {}
    trained = False  # every run trains at least one epoch, however short --stop-after-minutes
    for name in names:
        finished_before = checkpoint_root is not None and (checkpoint_root / name / RESULT_FILE).exists()
        out_of_time = trained and deadline is not None and time.monotonic() > deadline
        if not finished_before and (out_of_time or any(r["status"] != "finished" for r in results.values())):
            results[name] = {"status": "not started"}
            continue
        results[name] = run_config(name, data, args, full_steps_per_epoch, checkpoint_root, deadline)
        trained = trained or not finished_before
    complete = all(r["status"] == "finished" for r in results.values())
    if not complete:
        progress(f"paused; run the same command again to continue from {checkpoint_root}")
    report: dict[str, Any] = {
        "protocol": f"leave-one-out, max_len {args.max_len}; metrics: full ranking over all "
        f"{data.num_items} items but those in the user's test history (the reference code's evaluation); "
        "metrics_all_items: over all items",
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "options": vars(args),
        "data": {
            "path": str(path),
            "users_in_file": users_in_file,
            "users": int(len(data.test_targets)),
            "items": data.num_items,
            "train_sequences": len(data.train_windows),
            "train_positions": data.num_train_tokens,
            "full_data_steps_per_epoch": full_steps_per_epoch,
        },
        "complete": complete,
        "results": results,
        "paper": PAPER,
    }
    if all(results.get(n, {}).get("status") == "finished" for n in ("hstu_large", "sasrec")):
        large, sasrec = results["hstu_large"], results["sasrec"]
        report["gain_hstu_large_over_sasrec"] = {
            "ours": relative_gain(large["metrics"], sasrec["metrics"]),
            "ours_all_items": relative_gain(large["metrics_all_items"], sasrec["metrics_all_items"]),
            "paper": relative_gain(PAPER["hstu_large"], PAPER["sasrec"]),
        }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
