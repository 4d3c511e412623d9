"""The paper's published figures (Pei et al. 2022, Tables 2 and 3), keyed by registry name."""

from __future__ import annotations

__all__ = ["PAPER_TABLE2", "PAPER_TABLE3"]

#: Table 2: top-1 %, top-5 % on NEU.
PAPER_TABLE2: dict[str, tuple[float, float]] = {
    "resnet50": (95.09, 100.00),
    "resnet50+miam": (96.36, 100.00),
    "effnet": (94.81, 100.00),
    "effnet+miam": (95.83, 100.00),
    "mobilenet_v2": (95.57, 100.00),
    "mobilenet_v2+miam": (96.04, 100.00),
    "ilcs": (97.50, 100.00),
}

#: Table 3: params (M), FLOPs (G); the table names no input size nor batch.
PAPER_TABLE3: dict[str, tuple[float, float]] = {
    "resnet50": (25.56, 65.78),
    "resnet50+miam": (25.57, 65.79),
    "mobilenet_v2": (2.23, 4.70),
    "mobilenet_v2+miam": (2.24, 4.71),
    "effnet": (2.21, 8.35),
    "effnet+miam": (2.22, 8.36),
    "ilcs": (2.24, 4.26),
}
