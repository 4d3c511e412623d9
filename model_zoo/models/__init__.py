"""Model builders; importing this package registers them."""

from model_zoo.models.base import ClassifierOutput
from model_zoo.models.effnet import EffNet, effnet
from model_zoo.models.ilcs import ILCS, LCSBlock, ilcs
from model_zoo.models.torchvision_baselines import mobilenet_v2, resnet50

__all__ = ["ILCS", "ClassifierOutput", "EffNet", "LCSBlock", "effnet", "ilcs", "mobilenet_v2", "resnet50"]
