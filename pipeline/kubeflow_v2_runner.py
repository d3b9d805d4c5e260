"""Compiles the pipeline for Kubeflow Pipelines v2 / Vertex AI (KubeflowV2DagRunner).

Writes the pipeline-job JSON that `kfp` and Vertex AI submit; nothing runs here.
Every component runs in `image`, which must hold this package (build it from
this repository: `pip install .`). Data, outputs and the pushed models live
under remote paths (gs://...), and Beam components run on the runner named in
the config (`beam_runner="DataflowRunner"` plus its options in
`beam_extra_args`); remote Beam workers install the package from setup.py.

Example:
    config = PipelineConfig(data_dir="gs://bucket/logs", output_dir="gs://bucket/watchnext",
                            beam_runner="DataflowRunner",
                            beam_extra_args=("--project=p", "--region=europe-west4",
                                             "--temp_location=gs://bucket/tmp"))
    compile_pipeline(config, image="europe-docker.pkg.dev/p/repo/watchnext:1", output_file="watchnext.json")
"""

from __future__ import annotations

import logging
import os

from tfx import v1 as tfx

from watchnext.pipeline.configs import PipelineConfig
from watchnext.pipeline.pipeline import create_pipeline

DEFAULT_OUTPUT_FILE = "watchnext_pipeline.json"


def compile_pipeline(config: PipelineConfig, image: str, output_file: str = DEFAULT_OUTPUT_FILE) -> str:
    """Writes the Kubeflow V2 pipeline JSON for `config`; returns its path."""
    output_file = os.path.abspath(output_file)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(output_file),
        output_filename=os.path.basename(output_file),
    )
    runner.run(create_pipeline(config, local_metadata=False), write_out=True)
    logging.info("Kubeflow V2 pipeline written to %s (image %s)", output_file, image)
    return output_file
