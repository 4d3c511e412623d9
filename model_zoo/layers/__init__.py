"""The attention modules of the ILCS paper, one module per concept."""

from model_zoo.layers.channel_attention import ChannelAttention
from model_zoo.layers.conv_bn_act import ConvBnAct
from model_zoo.layers.create_attn import create_attn
from model_zoo.layers.interactive_attention import InteractiveAttention
from model_zoo.layers.miam import MIAM, AttendedFeatures
from model_zoo.layers.spatial_attention import SpatialAttention

__all__ = [
    "MIAM",
    "AttendedFeatures",
    "ChannelAttention",
    "ConvBnAct",
    "InteractiveAttention",
    "SpatialAttention",
    "create_attn",
]
