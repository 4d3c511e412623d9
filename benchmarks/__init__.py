"""Benchmarks and reproductions: model speed on this CPU (``models``) and the paper's Table 2 (``table2``)."""
