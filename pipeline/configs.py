"""Pipeline configuration: one object with every knob and its default.

Paths are derived from one output directory, so a run is easy to find:
    <output_dir>/tfx/            pipeline root (all component artifacts)
    <output_dir>/metadata.db     MLMD (SQLite): executions, artifacts, cache
    <output_dir>/serving/<model>/<version>/   pushed SavedModels (TF Serving layout)
"""

from __future__ import annotations

import dataclasses
import os

from watchnext.components.feature_gen.point_in_time import FeatureGenConfig
from watchnext.components.sequence_gen.sequences import DEFAULT_MAX_LEN

DEFAULT_PIPELINE_NAME = "watchnext"
# setup.py of this package: remote Beam workers build and install it from there.
SETUP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")
DEFAULT_OUTPUT_DIR = "watchnext-output"
RANKER_MODEL_NAME = "ranker"
HSTU_MODEL_NAME = "hstu"


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """When a trained model is blessed (pipeline/evaluation.py): both thresholds must hold."""

    min_click_auc: float = 0.55  # ranker: value threshold on the eval split
    max_click_auc_drop: float = 0.01  # ranker: tolerance vs the last blessed ranker
    split: str = "eval"
    # HSTU, on SequenceGen's leave-one-out test split (full ranking over all items):
    min_hit_rate_at_10: float = 0.0  # value threshold on HR@10 (raise it for real data)
    max_hit_rate_at_10_drop: float = 0.01  # tolerance vs the last blessed HSTU model


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    data_dir: str
    output_dir: str = DEFAULT_OUTPUT_DIR
    pipeline_name: str = DEFAULT_PIPELINE_NAME
    input_pattern: str = "*.csv"
    max_rejected_fraction: float = 0.1
    feature_gen: FeatureGenConfig = FeatureGenConfig()
    max_sequence_length: int = DEFAULT_MAX_LEN
    train_steps: int = 300
    eval_steps: int = 50
    batch_size: int = 256
    seed: int = 1
    enable_cache: bool = True
    beam_direct_running_mode: str = "multi_processing"
    beam_workers: int = 2
    # "DirectRunner" here; "DataflowRunner", "FlinkRunner", "SparkRunner" or
    # "PortableRunner" at scale, with their options in beam_extra_args (project,
    # region, temp_location, flink_master, ...). Remote runners get
    # --setup_file so their workers install this package.
    beam_runner: str = "DirectRunner"
    beam_extra_args: tuple[str, ...] = ()
    beam_setup_file: str = SETUP_FILE
    # RankerConfig fields (models/ranker/config.py) that differ from its defaults.
    ranker: dict = dataclasses.field(default_factory=dict)
    # The ranker's Trainer module: any importable `run_fn(fn_args)` with the same exports.
    ranker_run_fn: str = "watchnext.models.ranker.trainer.run_fn"
    # HSTU (models/hstu/trainer.py): EncoderConfig fields under "hstu", RetrievalConfig fields
    # under "retrieval"; training stops after hstu_train_steps.
    hstu: dict = dataclasses.field(default_factory=dict)
    hstu_train_steps: int = 200
    evaluation: EvaluationConfig = EvaluationConfig()

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "tfx")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata.db")

    def serving_dir(self, model_name: str) -> str:
        return os.path.join(self.output_dir, "serving", model_name)

    @property
    def beam_pipeline_args(self) -> list[str]:
        if self.beam_runner == "DirectRunner":
            local = [
                f"--direct_running_mode={self.beam_direct_running_mode}",
                f"--direct_num_workers={self.beam_workers}",
            ]
        else:
            local = [f"--setup_file={self.beam_setup_file}"]
        return [f"--runner={self.beam_runner}", *local, *self.beam_extra_args]


def is_remote(path: str) -> bool:
    """gs://, s3://, hdfs://, ... paths are used as given; local ones are made absolute."""
    return "://" in path


def absolute(path: str) -> str:
    return path if is_remote(path) else os.path.abspath(path)
