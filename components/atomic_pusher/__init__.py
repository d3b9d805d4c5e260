"""AtomicPusher: TFX's Pusher, but a model server never sees half a model version.

Lazy import: the executor pulls in TFX, which the Beam-only modules avoid.
"""


def __getattr__(name: str):
    if name == "AtomicPusher":
        from watchnext.components.atomic_pusher.component import AtomicPusher

        return AtomicPusher
    raise AttributeError(name)
