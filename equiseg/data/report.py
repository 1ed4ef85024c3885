"""Self-contained HTML report of a validation run: inline CSS and inline SVG charts, opens offline.

Great-expectations Data Docs load their styling from CDNs, so the pipeline's HTML artifact is this single file; the
Data Docs folder (``gx_docs/``, when the manifest rules ran as a GX suite) ships beside it (docs/data.md).
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from equiseg.data.io import DEFAULT_MAX_PIXELS

__all__ = ["bar_chart_svg", "offline_data_docs", "thumbnail_html", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2330;max-width:1100px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde;padding-bottom:.2rem}
.verdict{display:inline-block;padding:.3rem .8rem;border-radius:4px;font-weight:600;color:#fff}
.pass{background:#2e7d32}.fail{background:#c62828}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{border:1px solid #ccd;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f2f4f8}.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:600}pre{background:#f6f8fa;padding:.6rem;white-space:pre-wrap}
.charts{display:flex;flex-wrap:wrap;gap:1.2rem}.chart{border:1px solid #e3e6ee;padding:.4rem}
small{color:#667}
"""


_REMOTE_SCRIPT = re.compile(r"<script[^>]*\ssrc=[\"']https?://[^>]*>\s*</script>", re.I)
_REMOTE_LINK = re.compile(r"<link[^>]*\shref=[\"']https?://[^>]*>", re.I)
_REMOTE_IMG = re.compile(r"(<img[^>]*\ssrc=)([\"'])https?://[^\"']*\2", re.I)
_REMOTE_CSS_URL = re.compile(r"url\(\s*['\"]?https?://[^)]*\)", re.I)
_DOCS_CSS = (
    "<style>body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2330}table{border-collapse:collapse;"
    "margin:.5rem 0}td,th{border:1px solid #ccd;padding:.2rem .5rem;text-align:left;vertical-align:top}"
    "th{background:#f2f4f8}img{max-height:3rem}.hide,.d-none,.modal{display:none}</style>"
)


def offline_data_docs(docs_dir: Path) -> int:
    """Make Great Expectations Data Docs render offline; returns the number of pages rewritten.

    GX 1.x pages load Bootstrap, jQuery, Vega and Font Awesome from CDNs and the logo from S3: offline they are
    unstyled and the browser waits on requests that leave the machine. Every remote ``<script>``/``<link>`` is
    removed, remote images point at GX's own local logo, remote ``url()`` in the local CSS is dropped, and a small
    inline stylesheet keeps the tables readable. Links (``<a href>``) are kept: they are not loaded.
    """
    docs_dir = Path(docs_dir)
    logo = docs_dir / "static" / "images" / "logo-long.png"
    for css in docs_dir.rglob("*.css"):
        css.write_text(_REMOTE_CSS_URL.sub("none", css.read_text(encoding="utf-8")), encoding="utf-8")
    pages = 0
    for page in docs_dir.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        local_logo = os.path.relpath(logo, page.parent).replace(os.sep, "/")
        text = _REMOTE_SCRIPT.sub("", text)
        text = _REMOTE_LINK.sub("", text)
        text = _REMOTE_IMG.sub(rf"\g<1>\g<2>{local_logo}\g<2>", text)
        text = text.replace("</head>", _DOCS_CSS + "</head>", 1)
        page.write_text(text, encoding="utf-8")
        pages += 1
    return pages


def thumbnail_html(path: Path, size: int = 64, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """An ``<img>`` with a PNG data URI of the image at ``path`` (at most ``size`` px), or a note why there is none.

    A quarantined sample is often exactly an unreadable file, so a failure to decode is shown as text, never as a
    broken image.
    """
    name = _e(Path(path).name)
    try:
        with warnings.catch_warnings(), Image.open(path) as img:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if img.width * img.height > max_pixels:  # refused before decoding, as the readers refuse it
                return f'<span class="bad">{name}: {img.width}x{img.height} px, too large to preview</span>'
            img.load()
            if img.mode.startswith(("I", "F")):  # 16-bit depth: stretch to 8 bits for the eye
                values = np.asarray(img, dtype=np.float64)
                top = float(values.max()) or 1.0
                frame = Image.fromarray((values * (255.0 / top)).clip(0, 255).astype(np.uint8))
            else:
                frame = img.convert("RGB") if img.mode not in ("RGB", "L") else img.copy()
            frame.thumbnail((size, size))
            buffer = io.BytesIO()
            frame.save(buffer, format="PNG")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        return f'<span class="bad">{name}: cannot be read ({_e(type(exc).__name__)})</span>'
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{name}" src="data:image/png;base64,{data}">'


def _e(value: Any) -> str:
    return html.escape(str(value))


def bar_chart_svg(
    values: Sequence[float], labels: Sequence[str], *, title: str, width: int = 460, height: int = 180
) -> str:
    """An inline SVG bar chart (no scripts, no external assets)."""
    n = max(1, len(values))
    top = max([float(v) for v in values] + [1e-12])
    pad_left, pad_bottom, pad_top = 8, 34, 20
    bar_w = (width - pad_left * 2) / n
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(title)}"><title>{_e(title)}</title>',
        f'<text x="{pad_left}" y="14" font-size="12" font-weight="600">{_e(title)}</text>',
    ]
    usable = height - pad_bottom - pad_top
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        h = usable * float(value) / top
        x = pad_left + i * bar_w
        y = pad_top + usable - h
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" fill="#3f6fb5">'
            f"<title>{_e(label)}: {float(value):.4g}</title></rect>"
        )
        if n <= 16 or i % max(1, n // 8) == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - pad_bottom + 12}" font-size="9" '
                f'text-anchor="middle">{_e(label)[:10]}</text>'
            )
    parts.append(
        f'<line x1="{pad_left}" y1="{pad_top + usable}" x2="{width - pad_left}" y2="{pad_top + usable}" stroke="#889"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{_e(v)}</td>' if i in numeric else f"<td>{v if isinstance(v, _Raw) else _e(v)}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw(str):
    """Pre-escaped HTML inside a table cell."""


def _overview(stats: Mapping[str, Any], summary: str) -> list[str]:
    """Verdict, manifest identity, the summary text and the count tables."""
    verdict = (
        '<span class="verdict pass">PASSED</span>'
        if stats.get("passed")
        else '<span class="verdict fail">FAILED</span>'
    )
    counts = [stats.get("rows_in"), stats.get("rows_validated"), stats.get("rows_quarantined"), stats.get("bytes_read")]
    return [
        f"<h1>equiseg data validation {verdict}</h1>",
        f"<p><small>manifest {_e(stats.get('manifest'))} · sha256 {_e(stats.get('manifest_sha256', ''))[:16]}… · "
        f"class set {_e(stats.get('class_set') or 'n/a')}</small></p>",
        f"<pre>{_e(summary)}</pre>",
        "<h2>Counts</h2>",
        _table(["rows in", "validated", "quarantined", "bytes read"], [counts], numeric=(0, 1, 2, 3)),
        _table(
            ["split", "validated samples"], [[k, v] for k, v in stats.get("split_counts", {}).items()], numeric=(1,)
        ),
        _table(
            ["condition", "validated samples"],
            [[k, v] for k, v in stats.get("condition_counts", {}).items()],
            numeric=(1,),
        ),
    ]


def _blocking(stats: Mapping[str, Any]) -> list[str]:
    blocking = stats.get("blocking") or []
    if blocking:
        return [
            "<h2>Blocking rules</h2>",
            "<ul>" + "".join(f'<li class="bad">{_e(b)}</li>' for b in blocking) + "</ul>",
        ]
    return [
        "<h2>Blocking rules</h2>",
        f'<p class="ok">none triggered (quarantine ≤ {float(stats.get("max_quarantine_fraction", 0)):.1%}, '
        f"drift ≤ {float(stats.get('drift_threshold', 0)):.3f})</p>",
    ]


def _quarantine(
    stats: Mapping[str, Any],
    quarantine_rows: Sequence[Mapping[str, Any]],
    reason_descriptions: Mapping[str, str],
    max_rows: int,
    max_thumbnails: int = 12,
) -> list[str]:
    counts = stats.get("reason_counts", {})
    if not counts:
        return ["<h2>Quarantine</h2>", '<p class="ok">no sample quarantined</p>']
    shown = quarantine_rows[:max_rows]
    sections = [
        "<h2>Quarantine</h2>",
        _table(
            ["reason", "samples", "meaning"],
            [[code, n, reason_descriptions.get(code, "")] for code, n in counts.items()],
            numeric=(1,),
        ),
        _table(
            ["sample", "split", "reasons", "details"],
            [[r["sample_id"], r["split"], ", ".join(r["codes"]), r["message"]] for r in shown],
        ),
    ]
    thumbs = [r for r in shown if r.get("files")][:max_thumbnails]
    if thumbs:
        sections.append("<h3>What the quarantined samples look like</h3>")
        rows = []
        for r in thumbs:
            cells = "".join(f"<td>{_e(m)}<br>{thumbnail_html(Path(f))}</td>" for m, f in r["files"].items())
            rows.append(f"<tr><th>{_e(r['sample_id'])}<br><small>{_e(', '.join(r['codes']))}</small></th>{cells}</tr>")
        sections.append(f"<table>{''.join(rows)}</table>")
    if len(quarantine_rows) > len(shown):
        sections.append(f"<p><small>{len(quarantine_rows) - len(shown)} more in quarantine.parquet</small></p>")
    return sections


def _classes(stats: Mapping[str, Any], class_names: Sequence[str] | None) -> list[str]:
    histogram = stats.get("class_histogram", {})
    total = sum(histogram.values()) or 1
    names = list(class_names or [])
    labels = [names[int(c)] if int(c) < len(names) else f"class {c}" for c in histogram]
    chart = bar_chart_svg([v / total for v in histogram.values()], labels, title="pixel share per class")
    return [
        "<h2>Class histogram (validated samples, pixels)</h2>",
        f'<div class="charts"><div class="chart">{chart}</div></div>',
        _table(
            ["class", "pixels", "share"],
            [[lbl, n, f"{n / total:.2%}"] for lbl, n in zip(labels, histogram.values(), strict=True)],
            numeric=(1, 2),
        ),
    ]


def _modalities(stats: Mapping[str, Any]) -> list[str]:
    rows = []
    charts = ['<div class="charts">']
    for modality, summary in stats.get("modalities", {}).items():
        for c, channel in enumerate(summary["channels"]):
            rows.append(
                [
                    f"{modality}[{c}]",
                    f"{channel['mean']:.4f}",
                    f"{channel['std']:.4f}",
                    f"{summary['min'][c]:.4f}",
                    f"{summary['max'][c]:.4f}",
                ]
            )
            bins = [f"{i / 32:.2f}" for i in range(32)]
            chart = bar_chart_svg(channel["hist32"], bins, title=f"{modality} channel {c}", width=300, height=140)
            charts.append(f'<div class="chart">{chart}</div>')
    charts.append("</div>")
    return [
        "<h2>Modality intensities ([0, 1] units)</h2>",
        _table(["channel", "mean", "std", "min", "max"], rows, numeric=(1, 2, 3, 4)),
        "".join(charts),
    ]


def _drift(stats: Mapping[str, Any]) -> list[str]:
    drift = stats.get("drift") or {}
    if not drift:
        return [
            "<h2>Drift against the reference profile</h2>",
            "<p><small>no reference profile given (first accepted version)</small></p>",
        ]
    threshold = float(stats.get("drift_threshold", 0))
    rows = [
        [k, f"{v:.4f}", f"{threshold:.3f}", _Raw('<span class="bad">drift</span>' if v > threshold else "ok")]
        for k, v in drift.items()
    ]
    return [
        "<h2>Drift against the reference profile</h2>",
        _table(["statistic", "total-variation distance", "threshold", "status"], rows, numeric=(1, 2)),
        f"<p><small>reference: {_e(stats.get('reference_profile'))}</small></p>",
    ]


def _expectations(stats: Mapping[str, Any], gx_docs: bool) -> list[str]:
    rows = [
        [
            e["expectation"],
            e["column"],
            _Raw('<span class="ok">pass</span>' if e["success"] else '<span class="bad">fail</span>'),
            e["unexpected"],
        ]
        for e in stats.get("expectations", [])
    ]
    sections = [
        "<h2>Manifest expectations (Great Expectations)</h2>" if gx_docs else "<h2>Manifest expectations</h2>",
        _table(["expectation", "column", "result", "unexpected rows"], rows, numeric=(3,)),
    ]
    if gx_docs:
        sections.append("<p><small>Full GX Data Docs: gx_docs/index.html beside this file.</small></p>")
    return sections


def write_report(
    path: Path,
    *,
    stats: Mapping[str, Any],
    quarantine_rows: Sequence[Mapping[str, Any]],
    summary: str,
    reason_descriptions: Mapping[str, str],
    class_names: Sequence[str] | None = None,
    max_quarantine_rows: int = 500,
) -> Path:
    """Write ``report.html`` (verdict, counts, blocking rules, quarantine table, charts, drift, manifest rules)."""
    path = Path(path)
    if (path.parent / "gx_docs").is_dir():
        offline_data_docs(path.parent / "gx_docs")
    sections = [
        *_overview(stats, summary),
        *_blocking(stats),
        *_quarantine(stats, quarantine_rows, reason_descriptions, max_quarantine_rows),
        *_classes(stats, class_names),
        *_modalities(stats),
        *_drift(stats),
        *_expectations(stats, gx_docs=(path.parent / "gx_docs" / "index.html").is_file()),
    ]
    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>equiseg data validation</title>"
        f"<style>{_CSS}</style></head><body>{''.join(sections)}</body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path
