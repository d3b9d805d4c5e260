"""Keras 3 layers (backend-agnostic, `keras.ops` only).

- `MMoE`: multi-gate mixture-of-experts with gate dropout; `gate_polarization` diagnostic.
- `ShallowBiasTower`: position x device selection-bias logit with position dropout.
- `PosoGate`, `PosoDense`, `PosoMMoE`, `PosoMultiHeadAttention`: POSO personalized modules.
- `HSTULayer`, `RelativeAttentionBias`: HSTU's pointwise causal attention block; `SASRecBlock`: the baseline.
"""

from watchnext.models.layers.hstu import HSTULayer, RelativeAttentionBias
from watchnext.models.layers.mmoe import MMoE, gate_polarization
from watchnext.models.layers.poso_attention import PosoMultiHeadAttention
from watchnext.models.layers.poso_dense import PosoDense
from watchnext.models.layers.poso_gate import PosoGate
from watchnext.models.layers.poso_mmoe import PosoMMoE
from watchnext.models.layers.sasrec import SASRecBlock
from watchnext.models.layers.shallow_bias_tower import ShallowBiasTower

__all__ = [
    "HSTULayer",
    "MMoE",
    "PosoDense",
    "PosoGate",
    "PosoMMoE",
    "PosoMultiHeadAttention",
    "RelativeAttentionBias",
    "SASRecBlock",
    "ShallowBiasTower",
    "gate_polarization",
]
