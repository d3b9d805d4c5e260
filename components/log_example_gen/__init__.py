"""LogExampleGen: raw interaction-log CSV files -> validated tf.Examples + rejected rows.

The component is imported lazily: Beam workers import this package for the
transforms and must not pay for importing TFX and TensorFlow.
"""

__all__ = ["LogExampleGen", "RejectedRows"]


def __getattr__(name: str):
    if name in __all__:
        from watchnext.components.log_example_gen import component

        return getattr(component, name)
    raise AttributeError(name)
