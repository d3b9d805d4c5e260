"""SequenceGen: per-user retrieval and ranking sequences, leave-one-out, on Beam.

The component is imported lazily: Beam workers import this package for the
transforms and must not pay for importing TFX and TensorFlow.
"""

__all__ = ["SequenceGen"]


def __getattr__(name: str):
    if name == "SequenceGen":
        from watchnext.components.sequence_gen.component import SequenceGen

        return SequenceGen
    raise AttributeError(name)
