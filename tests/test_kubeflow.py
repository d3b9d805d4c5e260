"""Compiling for Kubeflow V2: a pipeline JSON that kfp loads, with every component and its parameters."""

from __future__ import annotations

import json

import kfp.components

from watchnext.pipeline.configs import PipelineConfig
from watchnext.pipeline.kubeflow_v2_runner import compile_pipeline

EXPECTED_PARAMETERS = {
    "LogExampleGen": {"input_base", "input_pattern", "output_config", "max_rejected_fraction"},
    "FeatureGen": {"config"},
    "SequenceGen": {"max_len"},
    "StatisticsGen.impressions": set(),
    "ImportSchemaGen.impressions": {"schema_file"},
    "ExampleValidator.impressions": set(),
    "StatisticsGen.retrieval_sequences": set(),
    "ImportSchemaGen.retrieval_sequences": {"schema_file"},
    "ExampleValidator.retrieval_sequences": set(),
    "Transform": {"preprocessing_fn"},
    "Trainer.ranker": {"run_fn", "custom_config", "train_args", "eval_args"},
    "Evaluator.ranker": {"eval_config", "example_splits"},
    "Pusher.ranker": {"push_destination"},
}


def test_compiled_pipeline_loads_in_kfp_with_every_component_and_parameter(tmp_path):
    config = PipelineConfig(
        data_dir="gs://bucket/logs",
        output_dir="gs://bucket/watchnext",
        beam_runner="DataflowRunner",
        beam_extra_args=("--project=demo", "--region=europe-west4"),
    )
    path = compile_pipeline(config, image="example.org/watchnext:1", output_file=str(tmp_path / "p.json"))
    job = json.loads(open(path).read())
    spec = job["pipelineSpec"]
    component = kfp.components.load_component_from_text(json.dumps(spec))
    assert component.name == config.pipeline_name

    tasks = spec["root"]["dag"]["tasks"]
    for name, parameters in EXPECTED_PARAMETERS.items():
        assert name in tasks, f"{name} missing from {sorted(tasks)}"
        assert parameters <= set(tasks[name].get("inputs", {}).get("parameters", {})), name
    assert any(name.startswith("LastBlessed.ranker") for name in tasks)

    def constant(task: str, parameter: str) -> str:
        return tasks[task]["inputs"]["parameters"][parameter]["runtimeValue"]["constantValue"]["stringValue"]

    assert constant("LogExampleGen", "input_base") == "gs://bucket/logs"
    assert "gs://bucket/watchnext/serving/ranker" in constant("Pusher.ranker", "push_destination")
    assert json.loads(constant("Trainer.ranker", "custom_config"))["ranker"]["seed"] == config.seed

    executors = spec["deploymentSpec"]["executors"]
    feature_gen_args = executors["FeatureGen_executor"]["container"]["args"]
    assert "--runner=DataflowRunner" in feature_gen_args
    assert "--project=demo" in feature_gen_args
    assert any(arg.startswith("--setup_file=") and arg.endswith("setup.py") for arg in feature_gen_args)
    assert all(
        e["container"]["image"] == "example.org/watchnext:1" for e in executors.values() if "container" in e
    )
