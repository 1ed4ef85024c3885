"""Pipeline step ``prepare_data``: the synthetic world or an ingested real dataset on the data root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equiseg.config import EquisegConfig
from equiseg.data import generate_from_config, ingest_dataset, read_manifest
from equiseg.steps.run_folder import TaskFacts

__all__ = ["PreparedData", "prepare_data"]


@dataclass(frozen=True)
class PreparedData:
    """The dataset written to the data root."""

    manifest: Path
    data_root: Path
    samples: int
    source: str

    def metadata(self) -> dict[str, Any]:
        """KFP artifact metadata: where the pixel files are, relative to which the manifest's paths resolve."""
        return {"data_root": str(self.data_root), "samples": self.samples, "source": self.source}


def prepare_data(
    cfg: EquisegConfig, *, source: str = "", ingest_root: str = "", facts: TaskFacts | None = None
) -> PreparedData:
    """Generate the synthetic world (deterministic per seed) or ingest a real dataset into ``data.root``.

    The output depends only on the config and the source, not on the pipeline run, so the task can be cached.
    """
    facts = facts if facts is not None else TaskFacts()
    source = source or cfg.data.source
    data_root = Path(cfg.data.root).resolve()
    with facts.timed("prepare_data"):
        if source == "synthetic":
            manifest = generate_from_config(cfg.data, data_root)
        else:
            if not ingest_root:
                raise ValueError(f"data source {source!r} needs --ingest-root pointing at the dataset's folder")
            # A real dataset stays where it is; the manifest (paths relative to that root) goes to data.root.
            manifest = ingest_dataset(source, Path(ingest_root), data_root, progress=False)
            data_root = Path(ingest_root).resolve()
        samples = read_manifest(manifest).num_rows
    facts.record(data={"source": source, "root": str(data_root), "samples": samples})
    return PreparedData(manifest=Path(manifest), data_root=data_root, samples=samples, source=source)
