"""The multimodal data layer: manifest, synthetic world, real-dataset readers, torch dataset, validation.

See docs/data.md. Core floor: stdlib, numpy, pyarrow, PIL, torch, yaml, tqdm only. Versioning with DVC is
``equiseg.versioning``; the manifest rules as a great-expectations suite are ``equiseg.expectations``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from equiseg.lazy import lazy_namespace

if TYPE_CHECKING:
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
    from equiseg.data.readers import (
        DATASET_CLASSES,
        SPECS,
        IngestResult,
        LayoutError,
        ingest,
        ingest_dataset,
        list_formats,
    )
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

#: public name -> the module that defines it, imported on first use (equiseg.lazy)
_LAZY: dict[str, str] = {
    "ALLOWED_SPLITS": "equiseg.data.manifest",
    "check_manifest_rules": "equiseg.data.manifest_rules",
    "CLASS_NAMES": "equiseg.data.synthetic",
    "CLASS_TABLE": "equiseg.data.synthetic",
    "collate_samples": "equiseg.data.dataset",
    "DATASET_CLASSES": "equiseg.data.readers",
    "drift_distances": "equiseg.data.validation",
    "generate_from_config": "equiseg.data.synthetic",
    "generate_synthetic": "equiseg.data.synthetic",
    "ingest": "equiseg.data.readers",
    "ingest_dataset": "equiseg.data.readers",
    "IngestResult": "equiseg.data.readers",
    "LayoutError": "equiseg.data.readers",
    "list_formats": "equiseg.data.readers",
    "make_loader": "equiseg.data.dataset",
    "manifest_data_root": "equiseg.data.manifest",
    "manifest_info": "equiseg.data.manifest",
    "manifest_modalities": "equiseg.data.manifest",
    "MANIFEST_NAME": "equiseg.data.manifest",
    "ManifestChecker": "equiseg.data.manifest_rules",
    "ManifestChecks": "equiseg.data.manifest_rules",
    "ManifestError": "equiseg.data.manifest",
    "ManifestRow": "equiseg.data.manifest",
    "MultimodalDataset": "equiseg.data.dataset",
    "PathEscapeError": "equiseg.data.manifest",
    "read_manifest": "equiseg.data.manifest",
    "REASON_CODES": "equiseg.data.pixelcheck",
    "resolve_in_root": "equiseg.data.manifest",
    "rows_to_table": "equiseg.data.manifest",
    "SCHEMA_VERSION": "equiseg.data.manifest",
    "SPECS": "equiseg.data.readers",
    "SYNTHETIC_CLASS_SET": "equiseg.data.synthetic",
    "SYNTHETIC_MODALITIES": "equiseg.data.synthetic",
    "SyntheticClass": "equiseg.data.synthetic",
    "validate_dataset": "equiseg.data.validation",
    "ValidationResult": "equiseg.data.validation",
    "write_manifest": "equiseg.data.manifest",
}

__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, globals())
