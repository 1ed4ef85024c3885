"""Tests of ``equiseg.promotion``; helper modules are imported relatively (``from .gate_synthetic import ...``)."""
