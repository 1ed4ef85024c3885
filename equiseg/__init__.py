"""equiseg: robust multimodal semantic segmentation (EQUISeg, arXiv 2509.24505) and its retraining system.

The library holds all logic, on four floors whose imports point down only (docs/design.md): ground (config,
modalities, provenance, figures), core (models, data, robustness, training), adapters (tracking, versioning,
expectations, tuning, promotion) and application (steps, experiments, cli). ``pip install equiseg`` installs what
the core needs; the adapters need the ``[mlops]`` extra, ``components/`` and ``pipelines/`` the ``[pipeline]`` extra.
Importing ``equiseg`` has no side effects.
"""

__version__ = "0.1.0"
