from .blocks import ChannelShuffle, ShuffleV1Unit, ShuffleV2Unit, channel_shuffle
from .registry import DEFAULT_MODEL, MODELS, ModelCost, ModelSpec, create_model, get_spec, model_cost
from .shufflenet_v1 import ShuffleNetV1, shufflenet_v1
from .shufflenet_v2 import ShuffleNetV2, shufflenet_v2

__all__ = [
    "ChannelShuffle", "ShuffleV1Unit", "ShuffleV2Unit", "channel_shuffle", "DEFAULT_MODEL", "MODELS", "ModelCost",
    "ModelSpec", "create_model", "get_spec", "model_cost", "ShuffleNetV1", "shufflenet_v1", "ShuffleNetV2",
    "shufflenet_v2",
]
