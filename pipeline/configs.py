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
DEFAULT_OUTPUT_DIR = "watchnext-output"
RANKER_MODEL_NAME = "ranker"


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
    # RankerConfig fields (models/ranker/config.py) that differ from its defaults.
    ranker: dict = dataclasses.field(default_factory=dict)

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
        return [
            "--runner=DirectRunner",
            f"--direct_running_mode={self.beam_direct_running_mode}",
            f"--direct_num_workers={self.beam_workers}",
        ]
