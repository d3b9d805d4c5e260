"""Builds the watchnext TFX pipeline from a `PipelineConfig`.

LogExampleGen -> StatisticsGen -> ImportSchemaGen(schemas/raw_log) -> ExampleValidator
              -> Trainer(baseline click model) -> Pusher(<output>/serving/baseline)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tfx import v1 as tfx

from watchnext.components.log_example_gen import LogExampleGen
from watchnext.pipeline.configs import BASELINE_MODEL_NAME, PipelineConfig
from watchnext.schemas import RAW_LOG_SCHEMA

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def source_fingerprint(directory: Path) -> str:
    """Hash of the model code, passed to the Trainer so a code change invalidates its cache."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.py")):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def create_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
    example_gen = LogExampleGen(
        input_base=str(Path(config.data_dir).resolve()),
        input_pattern=config.input_pattern,
        max_rejected_fraction=config.max_rejected_fraction,
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=str(RAW_LOG_SCHEMA))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    trainer = tfx.components.Trainer(
        run_fn="watchnext.models.baseline.trainer.run_fn",
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
        custom_config={
            "seed": config.seed,
            "batch_size": config.batch_size,
            "code_version": source_fingerprint(MODELS_DIR),
        },
    )
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=str(Path(config.serving_dir(BASELINE_MODEL_NAME)).resolve())
            )
        ),
    )
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=str(Path(config.pipeline_root).resolve()),
        components=[example_gen, statistics_gen, schema_gen, example_validator, trainer, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(Path(config.metadata_path).resolve())
        ),
        beam_pipeline_args=config.beam_pipeline_args,
    )
