"""A task or command process ends without the final full garbage collection, and exits as it would otherwise."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )


def test_a_task_freezes_its_objects_at_exit_and_keeps_its_exit_status_and_exit_hooks(tmp_path: Path) -> None:
    code = """
        import atexit, gc, sys
        from equiseg.steps.run_folder import TaskFacts
        atexit.register(lambda: print("frozen", gc.get_freeze_count() > 0, flush=True))  # runs after the freeze
        with TaskFacts.written_to("facts", "demo") as facts:
            facts.record(answer=42)
        print("before exit", gc.get_freeze_count(), flush=True)
        sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
    """
    done = _run(code, tmp_path)
    assert done.returncode == 3
    assert done.stdout.splitlines() == ["before exit 0", "frozen True"]
    assert '"answer": 42' in (tmp_path / "facts" / "demo.json").read_text()


def test_a_failing_task_still_fails(tmp_path: Path) -> None:
    code = """
        from equiseg.steps.run_folder import TaskFacts
        with TaskFacts.written_to("facts", "demo"):
            raise ValueError("bad input: fix it")
    """
    done = _run(code, tmp_path)
    assert done.returncode == 1
    assert "ValueError: bad input: fix it" in done.stderr
