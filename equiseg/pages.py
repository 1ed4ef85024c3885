"""Self-contained HTML pages from Markdown: inline CSS, images embedded as data URIs, no request off the machine.

Every report equiseg writes as Markdown (gate verdict, model card, run index) is also rendered with
:func:`markdown_to_html`, so a reviewer can open it offline in a browser (docs/pipeline.md, "Reports").
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from markdown_it import MarkdownIt

__all__ = ["markdown_to_html"]

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem;color:#1f2328}"
    "table{border-collapse:collapse;margin:.5rem 0}th,td{padding:.25rem .6rem;border-bottom:1px solid #d0d7de;"
    "text-align:left}td:nth-child(n+3){font-variant-numeric:tabular-nums}code{background:#f6f8fa;padding:0 .2rem}"
    "details{margin:.8rem 0}summary{cursor:pointer;font-weight:600}img{max-width:100%}"
)


_LOCAL_IMG = re.compile(r'<img src="([^":/]+\.(?:png|jpg|jpeg|svg))"')
_MIME = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "svg": "image/svg+xml"}


def _inline_images(body: str, base_dir: Path) -> str:
    """Replace ``<img src="file.png">`` of files in ``base_dir`` by data URIs, so the page is one file."""

    def inline(match: re.Match[str]) -> str:
        path = base_dir / match.group(1)
        if not path.is_file():
            return match.group(0)
        mime = _MIME[path.suffix.lower().lstrip(".")]
        return f'<img src="data:{mime};base64,{base64.b64encode(path.read_bytes()).decode("ascii")}"'

    return _LOCAL_IMG.sub(inline, body)


def markdown_to_html(text: str, title: str, base_dir: Path | None = None) -> str:
    """A self-contained HTML page (inline CSS, no external requests) rendering ``text`` (CommonMark + tables).

    Images next to the Markdown (``base_dir``) are embedded as data URIs.
    """
    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    if base_dir is not None:
        body = _inline_images(body, base_dir)
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
