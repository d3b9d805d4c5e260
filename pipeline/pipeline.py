"""Builds the watchnext TFX pipeline from a `PipelineConfig`.

LogExampleGen ─► FeatureGen ─► StatisticsGen ─► ExampleValidator ◄─ ImportSchemaGen(impressions)
      │              └───────► Transform ◄─────────────────────────────────────┘
      │                           └─► Trainer(ranker) ─► Evaluator(TFMA, vs last blessed)
      │                                                └─► AtomicPusher(<out>/serving/ranker) if blessed
      └────────► SequenceGen ─► StatisticsGen ─► ExampleValidator ◄─ ImportSchemaGen(retrieval_sequences)
                      └─► Trainer(HSTU) ─► Evaluator(HR/NDCG@K, vs last blessed)
                                       └─► AtomicPusher(<out>/serving/hstu) if blessed
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tfx import v1 as tfx

from watchnext.components.atomic_pusher import AtomicPusher
from watchnext.components.feature_gen import FeatureGen
from watchnext.components.log_example_gen import LogExampleGen
from watchnext.components.sequence_gen import SequenceGen
from watchnext.pipeline.configs import HSTU_MODEL_NAME, RANKER_MODEL_NAME, PipelineConfig, absolute
from watchnext.pipeline.evaluation import HSTU_EVAL_SPLIT, hstu_eval_config, ranker_eval_config
from watchnext.schemas import IMPRESSIONS_SCHEMA, RETRIEVAL_SEQUENCES_SCHEMA

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def source_fingerprint(directory: Path) -> str:
    """Hash of the model code, passed to the Trainer so a code change invalidates its cache."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.py")):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def validated_statistics(name: str, examples, schema_file: Path) -> list:
    """StatisticsGen, ImportSchemaGen, ExampleValidator for one Examples channel (schema second)."""
    statistics = tfx.components.StatisticsGen(examples=examples).with_id(f"StatisticsGen.{name}")
    schema = tfx.components.ImportSchemaGen(schema_file=str(schema_file)).with_id(f"ImportSchemaGen.{name}")
    validator = tfx.components.ExampleValidator(
        statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"]
    ).with_id(f"ExampleValidator.{name}")
    return [statistics, schema, validator]


def evaluated_push(name: str, config: PipelineConfig, trainer, examples, eval_config, split: str) -> tuple:
    """Evaluator (vs the last blessed model of this Trainer) and a Pusher gated by its blessing."""
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model, producer_component_id=trainer.id),
        model_blessing=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.ModelBlessing, producer_component_id=f"Evaluator.{name}"
        ),
    ).with_id(f"LastBlessed.{name}")
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config,
        example_splits=[split],
    ).with_id(f"Evaluator.{name}")
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=absolute(config.serving_dir(name)))
        ),
    ).with_id(f"Pusher.{name}")
    return evaluator, pusher, baseline


def create_pipeline(config: PipelineConfig, local_metadata: bool = True) -> tfx.dsl.Pipeline:
    """The whole DAG; `local_metadata=False` for orchestrators that bring their own MLMD (Kubeflow)."""
    example_gen = LogExampleGen(
        input_base=absolute(config.data_dir),
        input_pattern=config.input_pattern,
        max_rejected_fraction=config.max_rejected_fraction,
    )
    feature_gen = FeatureGen(examples=example_gen.outputs["examples"], config=config.feature_gen)
    sequence_gen = SequenceGen(examples=example_gen.outputs["examples"], max_len=config.max_sequence_length)
    impressions_checks = validated_statistics(
        "impressions", feature_gen.outputs["impressions"], IMPRESSIONS_SCHEMA
    )
    sequences_checks = validated_statistics(
        "retrieval_sequences", sequence_gen.outputs["retrieval_sequences"], RETRIEVAL_SEQUENCES_SCHEMA
    )
    transform = tfx.components.Transform(
        examples=feature_gen.outputs["impressions"],
        schema=impressions_checks[1].outputs["schema"],
        preprocessing_fn="watchnext.models.ranker.preprocessing.preprocessing_fn",
    )
    trainer = tfx.components.Trainer(
        run_fn=config.ranker_run_fn,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
        custom_config={
            "ranker": {**config.ranker, "seed": config.seed, "batch_size": config.batch_size},
            "code_version": source_fingerprint(MODELS_DIR),
        },
    ).with_id("Trainer.ranker")
    ranker_evaluator, ranker_pusher, ranker_baseline = evaluated_push(
        RANKER_MODEL_NAME, config, trainer, feature_gen.outputs["impressions"],
        ranker_eval_config(config.evaluation), config.evaluation.split,
    )  # fmt: skip
    hstu_trainer = tfx.components.Trainer(
        run_fn="watchnext.models.hstu.trainer.run_fn",
        examples=sequence_gen.outputs["retrieval_sequences"],
        train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=config.hstu_train_steps),
        eval_args=tfx.proto.EvalArgs(splits=[HSTU_EVAL_SPLIT], num_steps=0),
        custom_config={**config.hstu, "seed": config.seed, "code_version": source_fingerprint(MODELS_DIR)},
    ).with_id("Trainer.hstu")
    hstu_evaluator, hstu_pusher, hstu_baseline = evaluated_push(
        HSTU_MODEL_NAME, config, hstu_trainer, sequence_gen.outputs["retrieval_sequences"],
        hstu_eval_config(config.evaluation), HSTU_EVAL_SPLIT,
    )  # fmt: skip
    components = [
        example_gen,
        feature_gen,
        sequence_gen,
        *impressions_checks,
        *sequences_checks,
        transform,
        trainer,
        ranker_baseline,
        ranker_evaluator,
        ranker_pusher,
        hstu_trainer,
        hstu_baseline,
        hstu_evaluator,
        hstu_pusher,
    ]
    metadata = None
    if local_metadata:
        metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(
            absolute(config.metadata_path)
        )
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=absolute(config.pipeline_root),
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata,
        beam_pipeline_args=config.beam_pipeline_args,
    )
