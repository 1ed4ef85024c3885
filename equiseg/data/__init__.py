"""The multimodal data layer: manifest, synthetic world, real-dataset readers, torch dataset, validation.

See docs/data.md. Core floor: stdlib, numpy, pyarrow, PIL, torch, yaml, tqdm only. Versioning with DVC is
``equiseg.versioning``; the manifest rules as a great-expectations suite are ``equiseg.expectations``.
"""

from equiseg.data.dataset import MultimodalDataset, collate_samples, make_loader
from equiseg.data.manifest import (
    ALLOWED_SPLITS,
    MANIFEST_NAME,
    SCHEMA_VERSION,
    ManifestError,
    ManifestRow,
    PathEscapeError,
    manifest_data_root,
    manifest_info,
    manifest_modalities,
    read_manifest,
    resolve_in_root,
    rows_to_table,
    write_manifest,
)
from equiseg.data.manifest_rules import ManifestChecker, ManifestChecks, check_manifest_rules
from equiseg.data.pixelcheck import REASON_CODES
from equiseg.data.readers import DATASET_CLASSES, SPECS, IngestResult, LayoutError, ingest, ingest_dataset, list_formats
from equiseg.data.synthetic import (
    CLASS_NAMES,
    CLASS_TABLE,
    SYNTHETIC_CLASS_SET,
    SYNTHETIC_MODALITIES,
    SyntheticClass,
    generate_from_config,
    generate_synthetic,
)
from equiseg.data.validation import ValidationResult, drift_distances, validate_dataset

__all__ = [
    "ALLOWED_SPLITS",
    "CLASS_NAMES",
    "CLASS_TABLE",
    "DATASET_CLASSES",
    "MANIFEST_NAME",
    "REASON_CODES",
    "SCHEMA_VERSION",
    "SPECS",
    "SYNTHETIC_CLASS_SET",
    "SYNTHETIC_MODALITIES",
    "IngestResult",
    "LayoutError",
    "ManifestChecker",
    "ManifestChecks",
    "ManifestError",
    "ManifestRow",
    "MultimodalDataset",
    "PathEscapeError",
    "SyntheticClass",
    "ValidationResult",
    "check_manifest_rules",
    "collate_samples",
    "drift_distances",
    "generate_from_config",
    "generate_synthetic",
    "ingest",
    "ingest_dataset",
    "list_formats",
    "make_loader",
    "manifest_data_root",
    "manifest_info",
    "manifest_modalities",
    "read_manifest",
    "resolve_in_root",
    "rows_to_table",
    "validate_dataset",
    "write_manifest",
]
