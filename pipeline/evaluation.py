"""TFMA evaluation of the ranker: slices, metrics and the blessing rule, from one config.

Slices: overall, user cohort (new / light / regular), new-item flag, device.
Metrics (TFMA-native, so they work with a Keras 3 SavedModel): AUC,
calibration, mean label / prediction and example count per binary task
(click, like); mean squared error per regression task (watch time).

Blessing: the overall click AUC must reach `min_click_auc` (value threshold) and
must not fall more than `max_click_auc_drop` below the last blessed model's
(change threshold; the first model has no baseline and needs only the value).

HSTU (`hstu_eval_config`): its serving_default returns, per test sequence,
the target's rank among all items and hit/NDCG at 10, 50, 200, so HR@K and
NDCG@K are TFMA's MeanPrediction of those outputs; blessing gates HR@10.

Example:
    eval_config = ranker_eval_config(EvaluationConfig(min_click_auc=0.6))
"""

from __future__ import annotations

from tensorflow_model_analysis.proto import config_pb2

from watchnext.models import features as F
from watchnext.pipeline.configs import EvaluationConfig

SIGNATURE = "serving_default"
BINARY_OUTPUTS = {"click_probability": F.CLICK, "like_probability": F.LIKE}
REGRESSION_OUTPUTS = {"watch_time_s": F.WATCH_TIME_S}
SLICE_FEATURES = (F.USER_COHORT, F.ITEM_IS_NEW, F.DEVICE)


def blessing_threshold(lower_bound: float, max_drop: float) -> config_pb2.MetricThreshold:
    """Value >= lower_bound, and at most max_drop below the baseline (higher is better)."""
    return config_pb2.MetricThreshold(
        value_threshold=config_pb2.GenericValueThreshold(lower_bound={"value": lower_bound}),
        change_threshold=config_pb2.GenericChangeThreshold(
            direction=config_pb2.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -max_drop}
        ),
    )


def _overall_only(threshold: config_pb2.MetricThreshold) -> config_pb2.PerSliceMetricThreshold:
    return config_pb2.PerSliceMetricThreshold(slicing_specs=[config_pb2.SlicingSpec()], threshold=threshold)


def _binary_metrics(auc_threshold: config_pb2.MetricThreshold | None = None) -> list[config_pb2.MetricConfig]:
    metrics = [
        config_pb2.MetricConfig(class_name=n)
        for n in ("ExampleCount", "Calibration", "MeanLabel", "MeanPrediction")
    ]
    auc = config_pb2.MetricConfig(class_name="AUC")
    if auc_threshold is not None:
        # Blessing reads the overall slice only: small slices are reported, not gated.
        auc.per_slice_thresholds.append(_overall_only(auc_threshold))
    return [auc, *metrics]


def ranker_eval_config(config: EvaluationConfig) -> config_pb2.EvalConfig:
    outputs = {**BINARY_OUTPUTS, **REGRESSION_OUTPUTS}
    click_auc_threshold = blessing_threshold(config.min_click_auc, config.max_click_auc_drop)
    metrics_specs = [
        config_pb2.MetricsSpec(
            output_names=["click_probability"], metrics=_binary_metrics(click_auc_threshold)
        ),
        config_pb2.MetricsSpec(output_names=["like_probability"], metrics=_binary_metrics()),
        config_pb2.MetricsSpec(
            output_names=list(REGRESSION_OUTPUTS),
            metrics=[config_pb2.MetricConfig(class_name=n) for n in ("ExampleCount", "MeanSquaredError")],
        ),
    ]
    return config_pb2.EvalConfig(
        model_specs=[
            config_pb2.ModelSpec(
                signature_name=SIGNATURE,
                label_keys=outputs,
                prediction_keys={name: name for name in outputs},
            )
        ],
        slicing_specs=[
            config_pb2.SlicingSpec(),
            *(config_pb2.SlicingSpec(feature_keys=[f]) for f in SLICE_FEATURES),
        ],
        metrics_specs=metrics_specs,
    )


HSTU_OUTPUTS = tuple(f"{metric}_at_{k}" for metric in ("hit", "ndcg") for k in (10, 50, 200))
HSTU_EVAL_SPLIT = "test"


def hstu_eval_config(config: EvaluationConfig) -> config_pb2.EvalConfig:
    hit_rate_threshold = blessing_threshold(config.min_hit_rate_at_10, config.max_hit_rate_at_10_drop)
    specs = []
    for output in HSTU_OUTPUTS:
        mean = config_pb2.MetricConfig(class_name="MeanPrediction")
        if output == "hit_at_10":
            mean.per_slice_thresholds.append(_overall_only(hit_rate_threshold))
        specs.append(
            config_pb2.MetricsSpec(
                output_names=[output],
                metrics=[config_pb2.MetricConfig(class_name="ExampleCount"), mean],
                example_weights=config_pb2.ExampleWeightOptions(unweighted=True),
            )
        )
    return config_pb2.EvalConfig(
        model_specs=[
            config_pb2.ModelSpec(
                signature_name=SIGNATURE,
                prediction_keys={o: o for o in HSTU_OUTPUTS},
                # TFMA adds up predictions only of examples that have a label; MeanPrediction does not
                # read it, so any feature every sequence has stands in.
                label_keys={o: F.HISTORY_LENGTH for o in HSTU_OUTPUTS},
            )
        ],
        slicing_specs=[config_pb2.SlicingSpec()],
        metrics_specs=specs,
    )
