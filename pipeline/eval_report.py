"""`watchnext eval-report RUN_DIR`: the TFMA slice table of a run's latest evaluation, per model.

The ranker's table (below) and HSTU's (sequences, HR@10/50/200, NDCG@10/50/200):

    slice                        examples  click AUC  click calib.  like AUC  watch MSE
    overall                          1234     0.6712         1.01    0.6012     102.3
    user_cohort=new                    80     0.6101         0.97    ...

plus whether the model was blessed. Reads Evaluator outputs under
`RUN_DIR/tfx/Evaluator.<model>/evaluation/<execution>/` (the newest).
"""

from __future__ import annotations

import dataclasses
import glob
import os

COLUMNS = (
    ("examples", "example_count", "click_probability"),
    ("click AUC", "auc", "click_probability"),
    ("click calibration", "calibration", "click_probability"),
    ("like AUC", "auc", "like_probability"),
    ("like calibration", "calibration", "like_probability"),
    ("watch time MSE", "mean_squared_error", "watch_time_s"),
    # HSTU: HR@K and NDCG@K are the mean of per-sequence hit / NDCG outputs.
    ("sequences", "example_count", "hit_at_10"),
    *((f"HR@{k}", "mean_prediction", f"hit_at_{k}") for k in (10, 50, 200)),
    *((f"NDCG@{k}", "mean_prediction", f"ndcg_at_{k}") for k in (10, 50, 200)),
)


@dataclasses.dataclass(frozen=True)
class SliceRow:
    name: str
    values: dict[str, float]


def _newest(pattern: str) -> str | None:
    matches = sorted(
        glob.glob(pattern), key=lambda p: int(os.path.basename(p)) if p.split("/")[-1].isdigit() else 0
    )
    return matches[-1] if matches else None


def _slice_name(slice_key) -> str:
    parts = []
    for single in slice_key.single_slice_keys:
        kind = single.WhichOneof("kind")
        value = getattr(single, kind)
        parts.append(f"{single.column}={value.decode() if isinstance(value, bytes) else value}")
    return ", ".join(parts) or "overall"


def slice_rows(evaluation_dir: str) -> list[SliceRow]:
    import tensorflow_model_analysis as tfma

    rows = []
    for metrics in tfma.load_metrics(evaluation_dir):
        values = {}
        for entry in metrics.metric_keys_and_values:
            if entry.key.is_diff:  # changes vs the baseline model: not in this table
                continue
            if entry.value.WhichOneof("type") == "double_value":
                values[(entry.key.name, entry.key.output_name)] = entry.value.double_value.value
        row = {label: values[(name, output)] for label, name, output in COLUMNS if (name, output) in values}
        rows.append(SliceRow(_slice_name(metrics.slice_key), row))
    return sorted(rows, key=lambda r: (r.name != "overall", r.name))


def format_table(rows: list[SliceRow]) -> str:
    width = max([len("slice"), *(len(r.name) for r in rows)]) + 2
    labels = [label for label, _, _ in COLUMNS if any(label in r.values for r in rows)]
    lines = [f"{'slice':<{width}}" + "".join(f"{label:>19}" for label in labels)]
    for row in rows:
        cells = []
        for label in labels:
            value = row.values.get(label)
            if value is None:
                cells.append(f"{'-':>19}")
            elif label in ("examples", "sequences"):
                cells.append(f"{int(value):>19d}")
            else:
                cells.append(f"{value:>19.4f}")
        lines.append(f"{row.name:<{width}}" + "".join(cells))
    return "\n".join(lines)


def blessing(run_dir: str, evaluator: str) -> str:
    newest = _newest(os.path.join(run_dir, "tfx", evaluator, "blessing", "*"))
    if newest is None:
        return "no blessing recorded"
    if os.path.exists(os.path.join(newest, "BLESSED")):
        return "BLESSED"
    return "NOT BLESSED" if os.path.exists(os.path.join(newest, "NOT_BLESSED")) else "unknown"


def report(run_dir: str) -> str:
    """The slice table and blessing of every Evaluator in the run directory."""
    evaluators = sorted(os.path.basename(p) for p in glob.glob(os.path.join(run_dir, "tfx", "Evaluator*")))
    if not evaluators:
        raise FileNotFoundError(
            f"no Evaluator output under {os.path.join(run_dir, 'tfx')}: run `watchnext run` first"
        )
    sections = []
    for evaluator in evaluators:
        evaluation = _newest(os.path.join(run_dir, "tfx", evaluator, "evaluation", "*"))
        if evaluation is None:
            sections.append(f"{evaluator}: no evaluation yet")
            continue
        model = evaluator.split(".", 1)[-1]
        header = f"{model}: {blessing(run_dir, evaluator)} ({evaluation})"
        sections.append(header + "\n" + format_table(slice_rows(evaluation)))
    return "\n\n".join(sections)
