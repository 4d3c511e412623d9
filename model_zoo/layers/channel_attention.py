"""Channel attention, ILCS paper eq. (6)-(7) (the CBAM form).

    Mc(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F))),   MLP(x) = W1(W0(x))

The MLP is shared by both pooled vectors and squeezes the channels by
``reduction`` (CBAM's and the paper's value: 16) with a ReLU between the
two layers, as in CBAM. ``forward`` returns the gated features ``Mc(F) * F``;
``attention`` returns the gate ``Mc(F)`` alone (shape ``B x C x 1 x 1``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ChannelAttention"]


class ChannelAttention(nn.Module):
    """CBAM channel attention (paper eq. 6-7).

    Args:
        channels: Number of input channels C.
        reduction: Squeeze ratio of the shared MLP (hidden width C / reduction).
        min_hidden: Lower bound on the hidden width, so thin layers keep a real MLP.
        act_layer: Activation between the two MLP layers.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        min_hidden: int = 8,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        hidden = max(channels // reduction, min_hidden)
        # 1x1 convolutions on a C x 1 x 1 map are the two fully connected layers W0, W1.
        self.fc0 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.act = act_layer()
        self.fc1 = nn.Conv2d(hidden, channels, 1, bias=False)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(self.act(self.fc0(x)))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Return the channel gate Mc(F), shape B x C x 1 x 1, values in (0, 1)."""
        # Pooling ops (not mean/amax) because amax's backward is several times slower on CPU.
        avg = F.adaptive_avg_pool2d(x, 1)
        mx = F.adaptive_max_pool2d(x, 1)
        return torch.sigmoid(self.mlp(avg) + self.mlp(mx))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)
