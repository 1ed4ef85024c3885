"""The data report shows what quarantined samples look like, and GX Data Docs render offline."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

from equiseg.data import validate_dataset
from equiseg.expectations import run_manifest_suite

_REMOTE = re.compile(r"""<(script|link|img)[^>]*\s(src|href)=["']https?://""", re.I)


def test_quarantined_samples_have_thumbnails_and_data_docs_load_nothing_remote(
    tmp_path: Path, make_synthetic: Callable[..., Path]
) -> None:
    root = tmp_path / "data"
    manifest = make_synthetic(root, samples=8, size=32)
    rows = pq.read_table(manifest).to_pylist()
    broken = rows[0]
    (root / broken["rgb_path"]).write_bytes(b"not a png at all")  # an unreadable file gets quarantined
    result = validate_dataset(
        manifest,
        root,
        tmp_path / "report",
        num_classes=4,
        workers=1,
        progress=False,
        max_quarantine_fraction=0.5,
        manifest_checks=run_manifest_suite,
    )
    assert result.rows_quarantined == 1
    page = (tmp_path / "report" / "report.html").read_text()
    section = page.split("What the quarantined samples look like", 1)[1]
    assert broken["sample_id"] in section
    assert f"{Path(broken['rgb_path']).name}: cannot be read" in section  # shown as text, not a broken image
    assert section.count("data:image/png;base64,") >= 3  # depth, thermal and label of that sample
    docs = list((tmp_path / "report" / "gx_docs").rglob("*.html"))
    assert docs, "GX wrote no Data Docs"
    for doc in docs:
        text = doc.read_text()
        assert not _REMOTE.search(text), f"{doc.name} still loads {_REMOTE.search(text).group(0)!r}"
        assert "<style>" in text  # readable without Bootstrap
    for css in (tmp_path / "report" / "gx_docs").rglob("*.css"):
        assert "https://" not in css.read_text()
