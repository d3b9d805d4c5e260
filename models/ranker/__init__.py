"""Multitask ranker: Wide&Deep with MMoE (optionally POSO) and a shallow position-bias tower.

- `config.RankerConfig`: every knob (position handling, deep part, task loss weights, score weights).
- `preprocessing.preprocessing_fn`: the TFX Transform step (vocabularies, buckets, log1p labels).
- `model.MultitaskRanker`: the Keras 3 model on transformed features.
- `trainer.run_fn`: the TFX Trainer entry point; exports `serving_default` and `predict`.
"""
