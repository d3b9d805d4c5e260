"""Ranker quality on synthetic logs with known truth; prints JSON.

Generates synthetic logs, runs the real pipeline once (LogExampleGen ->
FeatureGen -> Transform -> ...), then trains every arm with the same
`train_ranker` call (same data, steps, batch size and seed) on Transform's
output and scores the eval split the way the exported model does (position
never read):

  a. position: bias tower vs position as an input feature vs no position:
     click AUC on the randomized-position slice over seeds, pooled and grouped
     by request (GAUC: the items a request ranks together; pooled AUC also
     rewards predicting each device's mean examination rate, which the served
     bias-tower score holds as b(missing position, device)), the bias tower's
     paired difference to each other arm with a bootstrap 95% interval (rows,
     or requests for GAUC), the bias-tower arm also with the tower left out at
     serving, and the AUC of the true relevance draw on all eval rows;
  b. the bias tower's learned position effect vs the generator's true
     examination propensity: Spearman over positions 1..slate_size, per device;
  c. MMoE vs shared bottom: every task metric;
  d. POSO-MMoE vs MMoE: click AUC on new users and on regular users, over seeds,
     with POSO - MMoE and a paired bootstrap 95% interval per cohort; once with
     new users' ids as the shared out-of-vocabulary row (the ranker's default)
     and once with their own id rows (POSO's setting);
  e. submergence: mean |change| of the per-task tower inputs when the new-user
     flag is masked, on new-user rows, MMoE vs POSO; and POSO's mean personalized
     gate per expert on new and on regular users (1 at initialization);
  f. gate polarization: share of experts with mean gate < 0.01, gate dropout on/off.

    env/run.sh python benchmarks/ranking_quality.py                # default size
    env/run.sh python benchmarks/ranking_quality.py --rows 60000 --epochs 1 --seeds 1   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def log(message: str) -> None:
    print(f"[ranking_quality] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data


def logs_config(rows: int, seed: int, **behaviour: float):
    """The generator's config for `rows` impressions; `behaviour`: SyntheticConfig fields
    (the benchmark's selection bias and new-user behaviour)."""
    from watchnext.pipeline.data import synthetic

    return synthetic.SyntheticConfig(
        seed=seed, num_requests=-(-rows // synthetic.SyntheticConfig.slate_size), **behaviour
    )


def pipeline_config(work: Path, workers: int):
    from watchnext.pipeline.configs import PipelineConfig
    from watchnext.pipeline.data import synthetic

    return PipelineConfig(
        data_dir=str(work / "logs"), input_pattern=synthetic.LOGS_FILE, output_dir=str(work / "run"),
        train_steps=10, eval_steps=5, hstu_train_steps=1, beam_workers=workers,
    )  # fmt: skip


# The code that turns logs into Transform's output; a prepared run made by other code is not reused.
PREPARING_CODE = ("pipeline", "components", "models/features.py", "models/ranker/preprocessing.py")
PREPARED_FILE = "prepared.json"


def preparing_code_digest() -> str:
    """sha256 over the paths and bytes of the Python files in PREPARING_CODE."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for entry in PREPARING_CODE:
        path = root / entry
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def preparation_record(config) -> dict[str, object]:
    return {"logs_config": dataclasses.asdict(config), "code_sha256": preparing_code_digest()}


def prepare(work: Path, config, workers: int) -> None:
    """Generates the logs, runs the pipeline (through Transform) on them and records how."""
    from watchnext.pipeline import local_runner
    from watchnext.pipeline.data import synthetic

    (work / PREPARED_FILE).unlink(missing_ok=True)
    synthetic.generate(config, work / "logs")
    log(local_runner.run(pipeline_config(work, workers)).format())
    (work / PREPARED_FILE).write_text(json.dumps(preparation_record(config), indent=2) + "\n")


def why_not_prepared(work: Path, config) -> str | None:
    """None if `work` holds a finished pipeline run on logs made with `config` by the current code,
    else the reason (the first differing field of the record, or what is missing)."""
    record = work / PREPARED_FILE
    if not record.exists():
        return f"no {PREPARED_FILE} in {work}"
    saved = json.loads(record.read_text())
    current = json.loads(json.dumps(preparation_record(config)))
    if saved.get("code_sha256") != current["code_sha256"]:
        return f"the preparing code ({', '.join(PREPARING_CODE)}) changed since {record} was written"
    saved_logs, current_logs = saved.get("logs_config", {}), current["logs_config"]
    for key in sorted(set(saved_logs) | set(current_logs)):
        if saved_logs.get(key) != current_logs.get(key):
            return f"logs setting {key}: {saved_logs.get(key)!r} there, {current_logs.get(key)!r} now"
    transformed = glob.glob(
        os.path.join(work, "run", "**", "Transform", "transformed_examples", "*"), recursive=True
    )
    return None if transformed else f"no Transform output under {work / 'run'}"


def count_records(pattern: str) -> int:
    import tensorflow as tf

    return sum(1 for _ in tf.data.TFRecordDataset(glob.glob(pattern), compression_type="GZIP"))


def newest(pattern: str) -> str:
    matches = sorted(glob.glob(pattern), key=os.path.getmtime)
    if not matches:
        raise FileNotFoundError(pattern)
    return matches[-1]


@dataclasses.dataclass
class EvalSet:
    """Transformed eval features (position removed, as served) with raw slicing keys and labels."""

    features: dict
    position: np.ndarray
    request: np.ndarray
    labels: dict
    randomized: np.ndarray
    new_user: np.ndarray
    regular_user: np.ndarray
    relevant: np.ndarray | None


def load_eval_set(run_root: str, tf_transform_output, truth_path: Path, batch: int = 8192) -> EvalSet:
    import pandas as pd
    import tensorflow as tf

    from watchnext.models import features as F
    from watchnext.models.ranker.preprocessing import LABEL_KEYS

    impressions = newest(os.path.join(run_root, "FeatureGen", "impressions", "*"))
    files = glob.glob(os.path.join(impressions, "Split-eval", "*.gz"))
    spec = tf_transform_output.raw_feature_spec()
    keys = (F.POSITION_RANDOMIZED, F.USER_COHORT, F.REQUEST_ID, F.ITEM_ID, F.POSITION)
    columns: dict[str, list] = {}
    raw_keys: dict[str, list] = {k: [] for k in keys}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch)
    for serialized in dataset:
        raw = tf.io.parse_example(serialized, spec)
        for key in keys:
            value = raw[key]
            if isinstance(value, tf.SparseTensor):
                value = tf.sparse.to_dense(value, default_value=0 if value.dtype == tf.int64 else b"")
            raw_keys[key].append(tf.reshape(value, [-1]).numpy())
        for name, value in tf_transform_output.transform_raw_features(raw).items():
            columns.setdefault(name, []).append(value.numpy())
    joined = {name: np.concatenate(parts) for name, parts in columns.items()}
    raw = {key: np.concatenate(parts) for key, parts in raw_keys.items()}
    labels = {name: joined.pop(name) for name in LABEL_KEYS}
    position = joined.pop(F.POSITION)
    truth = pd.read_csv(truth_path, usecols=[F.REQUEST_ID, F.ITEM_ID, "relevant"], dtype=str)
    relevant_by_key = dict(
        zip(zip(truth[F.REQUEST_ID], truth[F.ITEM_ID], strict=True), truth["relevant"], strict=True)
    )
    relevant = np.array(
        [
            relevant_by_key.get((r.decode(), i.decode()), "nan")
            for r, i in zip(raw[F.REQUEST_ID], raw[F.ITEM_ID], strict=True)
        ],
        dtype=float,
    )
    cohorts = raw[F.USER_COHORT]
    return EvalSet(
        features=joined,
        position=position,
        request=raw[F.REQUEST_ID],
        labels=labels,
        randomized=raw[F.POSITION_RANDOMIZED] == 1,
        new_user=cohorts == b"new",
        regular_user=cohorts == b"regular",
        relevant=relevant,
    )


# ---------------------------------------------------------------- metrics


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from scipy.stats import rankdata

    labels = np.asarray(labels) > 0.5
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def over_seeds(values: list[float | None]) -> dict[str, object]:
    """Per-seed values with their mean and standard deviation (None where a slice had one class)."""
    known = [v for v in values if v is not None]
    mean, std = (float(np.mean(known)), float(np.std(known))) if known else (None, None)
    return {"per_seed": values, "mean": mean, "std": std}


def paired_auc_difference(
    labels: np.ndarray, scores_a: list[np.ndarray], scores_b: list[np.ndarray], resamples: int = 400
) -> dict[str, float]:
    """Mean over seeds of AUC(a) - AUC(b) on the same rows, with a paired bootstrap 95% interval.

    Each resample draws the rows once (with replacement) and scores every seed of both arms
    on them, so the interval covers the eval-sample noise the two arms share.
    """
    rng = np.random.default_rng(0)

    def difference(rows: np.ndarray) -> float:
        pairs = [
            (auc(labels[rows], a[rows]), auc(labels[rows], b[rows]))
            for a, b in zip(scores_a, scores_b, strict=True)
        ]
        if any(x is None or y is None for x, y in pairs):
            return float("nan")  # a resample with one class only
        return float(np.mean([x - y for x, y in pairs]))

    everything = np.arange(len(labels))
    draws = [difference(rng.choice(everything, len(everything))) for _ in range(resamples)]
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return {"mean": difference(everything), "ci95_low": float(low), "ci95_high": float(high)}


def per_group_auc(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(AUC, row count) of every group that has both classes, groups in sorted order."""
    order = np.argsort(groups, kind="stable")
    _, starts = np.unique(groups[order], return_index=True)
    values, sizes = [], []
    for rows in np.split(order, starts[1:]):
        value = auc(labels[rows], scores[rows])
        if value is not None:
            values.append(value)
            sizes.append(len(rows))
    return np.asarray(values), np.asarray(sizes, float)


def grouped_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    """GAUC: the row-weighted mean of per-group AUC over groups with both classes."""
    values, sizes = per_group_auc(labels, scores, groups)
    return float(np.average(values, weights=sizes))


def paired_grouped_auc_difference(
    labels: np.ndarray,
    groups: np.ndarray,
    scores_a: list[np.ndarray],
    scores_b: list[np.ndarray],
    resamples: int = 2000,
) -> dict[str, float]:
    """Mean over seeds of GAUC(a) - GAUC(b), with a bootstrap 95% interval over groups (paired)."""
    per_seed = []
    for a, b in zip(scores_a, scores_b, strict=True):
        (auc_a, sizes), (auc_b, _) = per_group_auc(labels, a, groups), per_group_auc(labels, b, groups)
        per_seed.append(auc_a - auc_b)  # the same groups qualify for both: same labels
    differences = np.mean(per_seed, axis=0)
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(resamples):
        picked = rng.integers(0, len(differences), len(differences))
        draws.append(np.average(differences[picked], weights=sizes[picked]))
    low, high = np.percentile(draws, [2.5, 97.5])
    mean = float(np.average(differences, weights=sizes))
    return {"mean": mean, "ci95_low": float(low), "ci95_high": float(high), "groups": len(differences)}


def predict(model, features: dict, batch: int = 8192) -> dict[str, np.ndarray]:
    import keras

    outputs: dict[str, list] = {}
    n = len(next(iter(features.values())))
    for start in range(0, n, batch):
        chunk = {k: v[start : start + batch] for k, v in features.items()}
        for name, value in model(chunk, training=False).items():
            outputs.setdefault(name, []).append(keras.ops.convert_to_numpy(value))
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def click_without_bias_tower(model, features: dict, click: np.ndarray) -> np.ndarray:
    """The served click probability minus the bias tower's missing-position logit (per device).

    What the model would serve with `bias_tower_at_serving=False`: the same order within a
    request, without the device's mean examination.
    """
    import keras

    from watchnext.models import features as F

    device = keras.ops.convert_to_tensor(np.reshape(features[F.DEVICE], (-1,)).astype("int32"))
    missing = keras.ops.convert_to_numpy(model.bias_tower(keras.ops.zeros_like(device), device))
    logit = np.log(click.astype("float64")) - np.log1p(-click.astype("float64"))
    return 1.0 / (1.0 + np.exp(-(logit - missing.reshape(-1))))


def task_metrics(predictions: dict, labels: dict, mask: np.ndarray | None = None) -> dict[str, float | None]:
    from watchnext.models import features as F

    mask = np.ones_like(labels[F.CLICK], bool) if mask is None else mask
    rated = mask & (labels[F.RATING] > 0)
    watch_error = predictions["watch_time"][mask] - labels[F.WATCH_TIME_LOG1P][mask]
    rating_error = predictions["rating"][rated] - labels[F.RATING][rated]
    return {
        "click_auc": auc(labels[F.CLICK][mask], predictions["click"][mask]),
        "like_auc": auc(labels[F.LIKE][mask], predictions["like"][mask]),
        "watch_time_log1p_mse": float(np.mean(watch_error**2)),
        "rating_mse": float(np.mean(rating_error**2)) if rated.any() else None,
        "examples": int(mask.sum()),
    }


def rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


# ---------------------------------------------------------------- arms


def tower_inputs(model, features: dict, batch: int = 8192) -> np.ndarray:
    import keras

    parts = []
    n = len(next(iter(features.values())))
    for start in range(0, n, batch):
        chunk = {k: v[start : start + batch] for k, v in features.items()}
        parts.append(keras.ops.convert_to_numpy(model.task_features(chunk, training=False)))
    return np.concatenate(parts)


def submergence(model, eval_set: EvalSet) -> float:
    """Mean |change| of the tower inputs on new-user rows when the new-user flag is set to 0."""
    from watchnext.models import features as F

    rows = {k: v[eval_set.new_user] for k, v in eval_set.features.items()}
    masked = dict(rows)
    masked[F.USER_IS_NEW] = np.zeros_like(rows[F.USER_IS_NEW])
    return float(np.mean(np.abs(tower_inputs(model, rows) - tower_inputs(model, masked))))


def personalized_gate_means(model, eval_set: EvalSet) -> dict[str, list[float]]:
    """POSO's mean personalized gate C * g(x_pc) per expert, on new-user and on regular-user rows.

    Gates that stay near their initial 1 for both cohorts make POSO-MMoE a plain MMoE.
    """
    import keras

    gates = keras.ops.convert_to_numpy(
        model.deep.personalized_gates(model.personalization_code(eval_set.features))
    )
    return {
        cohort: [float(v) for v in gates[rows].mean(axis=0)]
        for cohort, rows in (("new", eval_set.new_user), ("regular", eval_set.regular_user))
    }


def polarization(model, eval_set: EvalSet) -> list[float]:
    import keras

    from watchnext.models.layers import gate_polarization

    hidden = model.hidden(eval_set.features)
    return [float(v) for v in keras.ops.convert_to_numpy(gate_polarization(model.deep.gates(hidden)))]


def spearman_per_device(model, config) -> dict[str, float]:
    from scipy.stats import spearmanr

    from watchnext.models import features as F
    from watchnext.pipeline.data import synthetic

    truth = synthetic.examination_propensity(config)
    learned = model.bias_tower.bias_table()  # row = position (0 = missing), column = device
    k = config.slate_size
    return {
        device: float(spearmanr(learned[1 : k + 1, d], truth[d, :k]).statistic)
        for d, device in enumerate(F.DEVICES)
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=300_000, help="synthetic impressions (default: %(default)s)"
    )
    parser.add_argument("--epochs", type=float, default=2.0, help="passes over the train split per arm")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the position (a) and POSO (d) arms")
    parser.add_argument("--data-seed", type=int, default=7)
    parser.add_argument(
        "--fresh-boost",
        type=float,
        default=1.5,
        help="the logged production ranker promotes fresh uploads by this much: selection bias that "
        "relevance does not explain, which a position-aware model must not learn (default: %(default)s)",
    )
    parser.add_argument(
        "--new-user-short-bonus",
        type=float,
        default=1.5,
        help="new users' extra relevance logit for short videos: a cohort-specific preference "
        "(POSO's setting) (default: %(default)s)",
    )
    parser.add_argument(
        "--new-user-affinity-factor",
        type=float,
        default=0.5,
        help="scales new users' personal-taste term of relevance: POSO's Fig. 1, new users 'seem "
        "interested in a broad range of videos' (default: %(default)s)",
    )
    parser.add_argument(
        "--new-user-popularity-factor",
        type=float,
        default=2.0,
        help="scales the item popularity term of new users' relevance: with less taste of their own "
        "they follow what is broadly liked (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=2, help="Beam DirectRunner workers")
    parser.add_argument("--work-dir", help="keep the pipeline outputs here (default: a temporary folder)")
    parser.add_argument(
        "--reuse-prepared",
        action="store_true",
        help="with --work-dir: reuse its pipeline run if it was made with the same logs settings and "
        "the same pipeline code",
    )
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.WARNING)

    import tensorflow_transform as tft

    from watchnext.models.ranker import config as C
    from watchnext.models.ranker.trainer import train_ranker
    from watchnext.pipeline.data import synthetic

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ranking_quality_") as scratch:
        work = Path(args.work_dir or scratch)
        synthetic_config = logs_config(
            args.rows,
            args.data_seed,
            fresh_item_ranker_boost=args.fresh_boost,
            new_user_short_item_relevance_bonus=args.new_user_short_bonus,
            new_user_affinity_factor=args.new_user_affinity_factor,
            new_user_popularity_factor=args.new_user_popularity_factor,
        )
        not_reused_because = why_not_prepared(work, synthetic_config) if args.reuse_prepared else None
        reused = args.reuse_prepared and not_reused_because is None
        if reused:
            log(f"reusing the pipeline run in {work}")
        elif args.reuse_prepared:
            log(f"not reusing {work}: {not_reused_because}; preparing it again")
        else:
            with contextlib.redirect_stdout(sys.stderr):  # Keras progress lines must not mix with the JSON
                prepare(work, synthetic_config, args.workers)
        prepared_s = time.monotonic() - started
        root = pipeline_config(work, args.workers).pipeline_root
        transform_output = tft.TFTransformOutput(
            newest(os.path.join(root, "Transform", "transform_graph", "*"))
        )
        examples = newest(os.path.join(root, "Transform", "transformed_examples", "*"))
        train_files = os.path.join(examples, "Split-train", "*.gz")
        eval_set = load_eval_set(root, transform_output, work / "logs" / synthetic.TRUTH_FILE)
        train_rows = count_records(train_files)
        base = C.RankerConfig()
        steps = max(1, int(args.epochs * train_rows / base.batch_size))
        log(f"train rows {train_rows}, eval rows {len(eval_set.position)}, {steps} steps per arm")

        arms: dict[str, object] = {}
        arm_seconds: dict[str, float] = {}

        def arm(name: str, **changes):
            if name not in arms:
                arm_started = time.monotonic()
                arms[name] = train_ranker(dataclasses.replace(base, **changes), transform_output, train_files,
                                          None, steps, verbose=0)  # fmt: skip
                arm_seconds[name] = round(time.monotonic() - arm_started, 1)
                log(f"trained {name} in {arm_seconds[name]} s")
            return arms[name]

        predictions = {}

        def scored(name: str, **changes):
            if name not in predictions:
                predictions[name] = predict(arm(name, **changes), eval_set.features)
            return predictions[name]

        e = eval_set
        result: dict[str, object] = {}
        position_arms = {
            C.POSITION_BIAS_TOWER: {}, C.POSITION_FEATURE: {"position_mode": C.POSITION_FEATURE},
            C.POSITION_NONE: {"position_mode": C.POSITION_NONE},
        }  # fmt: skip
        known = ~np.isnan(e.relevant)

        seeds = list(range(base.seed, base.seed + args.seeds))

        def seed_arm(name: str, seed: int) -> str:
            return name if seed == base.seed else f"{name}_seed{seed}"

        def randomized_click(name: str, seed: int) -> np.ndarray:
            return scored(seed_arm(name, seed), seed=seed, **position_arms[name])["click"][e.randomized]

        labels = e.labels["click"][e.randomized]
        requests = e.request[e.randomized]
        position_result: dict[str, object] = {}
        for name, changes in position_arms.items():
            per_seed = [auc(labels, randomized_click(name, seed)) for seed in seeds]
            per_seed_grouped = [grouped_auc(labels, randomized_click(name, seed), requests) for seed in seeds]
            click = scored(name, **changes)["click"]
            position_result[name] = {
                "click_auc_randomized_slice": over_seeds(per_seed),
                "click_gauc_by_request_randomized_slice": over_seeds(per_seed_grouped),
                "relevance_auc_all_eval_seed1": auc(e.relevant[known], click[known]),
            }  # fmt: skip
        tower_arms = [seed_arm(C.POSITION_BIAS_TOWER, seed) for seed in seeds]
        left_out = [
            click_without_bias_tower(arms[name], e.features, scored(name)["click"]) for name in tower_arms
        ]
        position_result[C.POSITION_BIAS_TOWER]["tower_left_out_at_serving"] = {
            "click_auc_randomized_slice": over_seeds([auc(labels, c[e.randomized]) for c in left_out]),
            "relevance_auc_all_eval_seed1": auc(e.relevant[known], left_out[0][known]),
        }
        position_result["randomized_examples"] = int(e.randomized.sum())
        position_result["randomized_clicks"] = int((labels > 0.5).sum())
        position_result["best_by_mean"] = {
            metric: max(position_arms, key=lambda n, m=metric: position_result[n][m]["mean"] or -1.0)
            for metric in ("click_auc_randomized_slice", "click_gauc_by_request_randomized_slice")
        }
        position_result["bias_tower_minus_other"] = {
            other: paired_auc_difference(
                labels,
                [randomized_click(C.POSITION_BIAS_TOWER, seed) for seed in seeds],
                [randomized_click(other, seed) for seed in seeds],
            )
            for other in position_arms
            if other != C.POSITION_BIAS_TOWER
        }
        position_result["bias_tower_minus_other_gauc_by_request"] = {
            other: paired_grouped_auc_difference(
                labels,
                requests,
                [randomized_click(C.POSITION_BIAS_TOWER, seed) for seed in seeds],
                [randomized_click(other, seed) for seed in seeds],
            )
            for other in position_arms
            if other != C.POSITION_BIAS_TOWER
        }
        result["a_position_handling"] = position_result
        per_device = spearman_per_device(arm(C.POSITION_BIAS_TOWER), synthetic_config)
        result["b_position_effect_spearman"] = {**per_device, "min": min(per_device.values())}
        result["c_mmoe_vs_shared_bottom"] = {
            "mmoe": task_metrics(scored(C.POSITION_BIAS_TOWER), e.labels),
            "shared_bottom": task_metrics(scored("shared_bottom", deep=C.DEEP_SHARED_BOTTOM), e.labels),
        }

        def poso_vs_mmoe(arm_name, **changes) -> dict[str, object]:
            """Click AUC per cohort over seeds, and POSO - MMoE with a paired bootstrap per cohort."""
            click: dict[str, list[np.ndarray]] = {"mmoe": [], "poso": []}
            for seed in seeds:
                for kind, deep in (("mmoe", C.DEEP_MMOE), ("poso", C.DEEP_POSO_MMOE)):
                    click[kind].append(scored(arm_name(kind, seed), deep=deep, seed=seed, **changes)["click"])
            comparison: dict[str, object] = {}
            for cohort, rows in (("new", e.new_user), ("regular", e.regular_user)):
                cohort_labels = e.labels["click"][rows]
                comparison[cohort] = {
                    kind: over_seeds([auc(cohort_labels, c[rows]) for c in per_seed])
                    for kind, per_seed in click.items()
                }
                comparison[cohort]["poso_minus_mmoe"] = paired_auc_difference(
                    cohort_labels, [c[rows] for c in click["poso"]], [c[rows] for c in click["mmoe"]]
                )
            return comparison

        # The MMoE arm of each seed is the bias-tower arm of (a) with that seed.
        result["d_poso_vs_mmoe_click_auc"] = poso_vs_mmoe(
            lambda kind, seed: seed_arm(C.POSITION_BIAS_TOWER, seed) if kind == "mmoe" else f"poso_seed{seed}"
        )
        # POSO's own setting: a new user keeps their own (barely trained) id row, so nothing but the
        # new-user flag tells the deep part that a user is new. With the shared out-of-vocabulary row
        # (the default above) that row is itself a learned new-user signal in every expert and gate.
        result["d_poso_vs_mmoe_click_auc_new_users_own_ids"] = poso_vs_mmoe(
            lambda kind, seed: f"{kind}_own_ids_seed{seed}", new_user_id_as_oov=False
        )
        result["d_poso_vs_mmoe_all_tasks_seed1"] = {
            kind: {
                "new": task_metrics(scored(name), e.labels, e.new_user),
                "regular": task_metrics(scored(name), e.labels, e.regular_user),
            }
            for kind, name in (("mmoe", C.POSITION_BIAS_TOWER), ("poso", f"poso_seed{base.seed}"))
        }
        result["d_poso_vs_mmoe_click_auc"]["new_user_examples"] = int(e.new_user.sum())
        result["d_poso_vs_mmoe_click_auc"]["regular_user_examples"] = int(e.regular_user.sum())
        result["e_submergence_mean_abs_change"] = {
            "mmoe": submergence(arm(C.POSITION_BIAS_TOWER), e),
            "poso": submergence(arm(f"poso_seed{base.seed}", deep=C.DEEP_POSO_MMOE, seed=base.seed), e),
            "mmoe_own_ids": submergence(arm(f"mmoe_own_ids_seed{base.seed}"), e),
            "poso_own_ids": submergence(arm(f"poso_own_ids_seed{base.seed}"), e),
        }
        result["e_poso_personalized_gate_mean_seed1"] = {
            "oov_new_user_ids": personalized_gate_means(arms[f"poso_seed{base.seed}"], e),
            "own_new_user_ids": personalized_gate_means(arms[f"poso_own_ids_seed{base.seed}"], e),
        }
        result["f_gate_polarization_share_dead_experts"] = {
            "gate_dropout_0.1": polarization(arm(C.POSITION_BIAS_TOWER), e),
            "gate_dropout_0": polarization(arm("no_gate_dropout", gate_dropout=0.0), e),
        }
        result["setup"] = {
            "rows": args.rows, "fresh_boost": synthetic_config.fresh_item_ranker_boost,
            "new_user_short_bonus": synthetic_config.new_user_short_item_relevance_bonus,
            "new_user_affinity_factor": synthetic_config.new_user_affinity_factor,
            "new_user_popularity_factor": synthetic_config.new_user_popularity_factor,
            "train_rows": train_rows,
            "eval_rows": int(len(e.position)),
            "steps_per_arm": steps, "batch_size": base.batch_size, "epochs": args.epochs,
            "pipeline_s": "reused" if reused else round(prepared_s, 1), "arm_train_s": arm_seconds,
            "total_s": round(time.monotonic() - started, 1),
        }  # fmt: skip
        print(json.dumps(rounded(result), indent=2))


if __name__ == "__main__":
    main()
