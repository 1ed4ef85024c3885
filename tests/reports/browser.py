"""Open an HTML report in headless Chromium (Debian's ``chromium``) and say what broke.

The report folder is served from a loopback HTTP server that logs every request and sends each report with a
Content-Security-Policy allowing only itself and ``data:`` URIs, so every request the page attempts towards another
machine is blocked and reported back to the server; Chromium also runs behind a proxy that refuses whatever else
would leave the machine. A harness page loads the report in a same-origin
iframe and, once it has loaded, writes which ``<img>`` elements the browser could not decode. No DevTools protocol.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HARNESS = "__harness__.html"
CSP_REPORT = "/__csp__"
_CSP = (
    "default-src 'self' data:; img-src 'self' data:; style-src 'self' 'unsafe-inline' data:; "
    "script-src 'self' 'unsafe-inline'; font-src 'self' data:; report-uri " + CSP_REPORT
)
_HARNESS_PAGE = """<!doctype html><html><body><iframe id="f" style="width:1200px;height:900px"></iframe>
<script>
const frame = document.getElementById("f");
frame.onload = () => {
  const doc = frame.contentDocument;
  const imgs = Array.from(doc.images);
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0)
    .map(i => (i.getAttribute("src") || "").slice(0, 80));
  const out = document.createElement("pre");
  out.id = "result";
  out.textContent = "RESULT" + JSON.stringify({title: doc.title, images: imgs.length, broken: broken,
    text: (doc.body ? doc.body.innerText.length : 0)}) + "END";
  document.body.appendChild(out);
};
frame.src = decodeURIComponent(location.hash.slice(1));
</script></body></html>"""


def find_chromium() -> str | None:
    """Path of Debian's ``chromium`` (or ``chromium-browser``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageCheck:
    """What Chromium saw on one page."""

    page: str
    title: str = ""
    images: int = 0
    broken_images: list[str] = field(default_factory=list)
    text_chars: int = 0
    failed_local: list[str] = field(default_factory=list)  # requests to the report server that were not 200
    external: list[str] = field(default_factory=list)  # requests to other machines the page attempted (CSP reports)

    @property
    def ok(self) -> bool:
        return not (self.broken_images or self.failed_local or self.external) and self.text_chars > 0


class _Log:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.local: list[tuple[str, int]] = []
        self.external: list[str] = []
        self.proxied: list[str] = []


def _serving_handler(log: _Log, root: Path) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def do_GET(self) -> None:
            if self.path.split("#")[0].split("?")[0] == "/" + HARNESS:
                body = _HARNESS_PAGE.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def end_headers(self) -> None:
            # Reports may load only from this server or data: URIs; the browser reports anything else to /__csp__.
            if self.command == "GET" and self.path.split("?")[0].endswith(".html") and HARNESS not in self.path:
                self.send_header("Content-Security-Policy", _CSP)
            super().end_headers()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            if self.path.startswith(CSP_REPORT):
                try:
                    blocked = json.loads(body).get("csp-report", {}).get("blocked-uri", body)
                except ValueError:
                    blocked = body
                with log.lock:
                    log.external.append(f"blocked by the page policy: {blocked}")
            self.send_response(204)
            self.end_headers()

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            with log.lock:
                log.local.append((urllib.parse.unquote(self.path), int(code) if str(code).isdigit() else 0))

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def _proxy_handler(log: _Log) -> type[BaseHTTPRequestHandler]:
    class Proxy(BaseHTTPRequestHandler):
        def _refuse(self) -> None:
            # A safety net: nothing leaves the machine. Chromium's own background traffic also lands here, so it
            # is refused, not held against the page (the page's own attempts arrive as CSP reports).
            with log.lock:
                log.proxied.append(f"{self.command} {self.path}")
            self.send_error(502, "this test allows no request to leave the machine")

        do_GET = do_POST = do_HEAD = do_CONNECT = do_PUT = do_OPTIONS = _refuse

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Proxy


@contextlib.contextmanager
def _server(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def check_pages(root: Path, pages: list[Path], chromium: str, timeout_s: float = 60.0) -> list[PageCheck]:
    """Open every page (paths under ``root``) in headless Chromium; one :class:`PageCheck` each."""
    log = _Log()
    results = []
    with _server(_serving_handler(log, root)) as port, _server(_proxy_handler(log)) as proxy_port:
        for page in pages:
            rel = page.relative_to(root).as_posix()
            with log.lock:
                log.local.clear()
                log.external.clear()
            url = f"http://127.0.0.1:{port}/{HARNESS}#" + urllib.parse.quote("/" + urllib.parse.quote(rel), safe="")
            with tempfile.TemporaryDirectory(prefix="equiseg-chromium-") as profile:
                proc = subprocess.run(
                    [
                        chromium,
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--disable-features=OptimizationHints,MediaRouter,Translate",
                        f"--user-data-dir={profile}",
                        # every request for another machine goes to the recording proxy (loopback bypasses it)
                        f"--proxy-server=http://127.0.0.1:{proxy_port}",
                        "--virtual-time-budget=15000",
                        "--dump-dom",
                        url,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=timeout_s,
                    check=False,
                )
            found = re.search(r'<pre id="result">RESULT(.*?)END</pre>', proc.stdout, re.S)
            check = PageCheck(page=rel)
            if found is None:
                check.broken_images = [f"no result from the harness (exit {proc.returncode}): {proc.stderr[-300:]}"]
            else:
                raw = json.loads(html.unescape(found.group(1)), strict=False)
                check.title, check.images, check.text_chars = raw["title"], raw["images"], raw["text"]
                check.broken_images = list(raw["broken"])
            with log.lock:
                check.failed_local = [
                    p for p, code in log.local if code != 200 and "favicon" not in p and not p.startswith(CSP_REPORT)
                ]
                check.external = list(log.external)
            results.append(check)
    return results
