"""The gate report a reviewer approves from: verdict line, failing checks first, one row per check family."""

from __future__ import annotations

import re

from equiseg.config import GateConfig
from equiseg.promotion import decide, write_verdict
from equiseg.promotion.gate_report import check_family
from equiseg.promotion.verdict import Check
from equiseg.robustness.result import slice_label

from .gate_synthetic import base_per_image, make_result, shifted

POLICY = GateConfig(bootstrap_samples=200, noninferiority_margin=2.0)


def _family_rows(md: str) -> list[str]:
    section = md.split("## Checks by family", 1)[1].split("<details>", 1)[0]
    return [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith(("| family", "| ---"))]


def test_with_a_champion_the_report_has_one_row_per_family_with_delta_and_paired_bound(tmp_path) -> None:
    champ = base_per_image()
    cand = shifted(champ, {"emm_missing_rgb": -6.0})  # worse on one slice only
    serving = [
        Check("serving.load", 1.0, 1.0, 0.0, True, "loads"),
        Check("serving.rgb", 45.0, 5000.0, 4955.0, True, "serving with rgb in 45 ms"),
    ]
    verdict = decide(POLICY, make_result(cand), make_result(champ), champion_version="3").with_checks(serving)
    assert len(verdict.checks) >= 30  # many checks ...
    _, md_path = write_verdict(verdict, tmp_path)
    md = md_path.read_text()
    rows = _family_rows(md)
    assert len(rows) == len({check_family(c.name) for c in verdict.checks}) <= 8  # ... few rows
    assert md.splitlines()[2].startswith("**BLOCKED**: ") and "against champion version 3" in md.splitlines()[2]
    assert "| family | result | candidate | champion | Δ | paired 95% lower bound |" in md
    assert rows[0].startswith("| per-slice change vs champion (paired) | **FAIL**")  # failing family first
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert float(cells[4]) < -5.0  # Δ of the deciding slice
    assert float(cells[5]) < -2.0  # its paired lower bound fails the non-inferiority margin
    assert cells[6] == "emm_missing_rgb"
    serving_row = next(r for r in rows if r.startswith("| serving"))
    assert "| 45.00 |" in serving_row  # the latency itself, not budget minus latency
    # Failing checks are listed before the family table; every check and slice is folded below it.
    assert md.index("## Failing checks") < md.index("## Checks by family") < md.index("<details>")
    html = (tmp_path / "gate.html").read_text()
    assert "<table>" in html and "<details>" in html and "BLOCKED" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing loads from the network


def test_a_first_run_says_so_in_the_verdict_line(tmp_path) -> None:
    verdict = decide(POLICY, make_result(base_per_image()), None)
    _, md_path = write_verdict(verdict, tmp_path)
    line = md_path.read_text().splitlines()[2]
    assert line.startswith("**PASSED**: all") and "first run: no champion, floors only" in line


def test_slices_are_named_by_what_is_kept_and_what_is_missing() -> None:
    assert slice_label("emm/rgb") == "kept rgb"
    assert slice_label("emm/rgb-depth") == "kept rgb+depth"
    assert slice_label("rmm/r0.5/rgb") == "rgb missing in 50% of images"
    assert slice_label("corrupt/rgb/fog/s3") == "rgb fog, severity 3"
    assert slice_label("clean") == "clean"
