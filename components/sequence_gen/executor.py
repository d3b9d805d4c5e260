"""Beam executor of SequenceGen: per-user retrieval and ranking sequences, leave-one-out.

examples (all splits) ─► (user, event) ─LatestEvents─► latest max_len + 2 events per user
                      ─► train / test examples ─► retrieval_sequences, ranking_sequences
"""

from __future__ import annotations

import logging
from typing import Any

import apache_beam as beam
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from watchnext.components import examples_io
from watchnext.components.sequence_gen.transforms import SPLITS, build_sequences


class Executor(base_beam_executor.BaseBeamExecutor):
    """Writes retrieval and ranking sequence Examples, each with train/test splits."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        max_len = int(exec_properties["max_len"])
        source = artifact_utils.get_single_instance(input_dict["examples"])
        outputs = {
            "retrieval": artifact_utils.get_single_instance(output_dict["retrieval_sequences"]),
            "ranking": artifact_utils.get_single_instance(output_dict["ranking_sequences"]),
        }
        for artifact in outputs.values():
            artifact.split_names = artifact_utils.encode_split_names(list(SPLITS))
        splits = examples_io.split_names(source)
        logging.info("SequenceGen: splits %s of %s, max_len %d", splits, source.uri, max_len)

        with self._make_beam_pipeline() as pipeline:
            sequences = build_sequences(examples_io.read_all_splits(pipeline, source), max_len)
            targets = [(kind, split) for kind in outputs for split in SPLITS]
            parts = sequences | "ByOutput" >> beam.Partition(
                lambda r, _: targets.index((r[0], r[1])), len(targets)
            )
            for (kind, split), part in zip(targets, parts, strict=True):
                records = part | f"Drop[{kind},{split}]" >> beam.Map(lambda r: r[2])
                examples_io.write_split(records, outputs[kind], split, label=f"{kind},")
        for artifact in outputs.values():
            examples_io.mark_tf_example_payload(artifact)
        logging.info("SequenceGen: wrote %s", {k: a.uri for k, a in outputs.items()})
