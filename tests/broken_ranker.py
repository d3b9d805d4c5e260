"""A deliberately broken ranker Trainer module for the blessing test: every score is the same.

It trains nothing, zeroes every weight (so each output is a constant) and
exports through the real `export_ranker`, so only the quality differs.
"""

from __future__ import annotations

import numpy as np
import tensorflow_transform as tft

from watchnext.models.ranker import config as C
from watchnext.models.ranker.model import MultitaskRanker
from watchnext.models.ranker.trainer import export_ranker, make_dataset, vocabulary_sizes


def run_fn(fn_args) -> None:
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    model = MultitaskRanker(C.RankerConfig(), vocabulary_sizes(tf_transform_output))
    features, _ = next(iter(make_dataset(fn_args.train_files, tf_transform_output, 8, shuffle=False)))
    model(features)
    for weight in model.weights:
        weight.assign(np.zeros(weight.shape, weight.dtype))
    export_ranker(model, tf_transform_output, fn_args.serving_model_dir)
