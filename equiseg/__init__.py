"""equiseg: robust multimodal semantic segmentation (EQUISeg, arXiv 2509.24505) and its retraining system.

The library holds all logic: configuration, data, models, robustness evaluation, training, tuning, tracking and
the promotion gate. Importing ``equiseg`` or ``equiseg.models`` has no side effects and needs neither mlflow nor kfp.
"""

__version__ = "0.1.0"
