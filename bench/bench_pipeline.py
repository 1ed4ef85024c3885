"""Benchmark: local pipeline overhead = wall time of the whole run ÷ the sum of its steps' own times.

Each step records its own wall time (inside the step, after imports) in its facts output, merged into
``<run dir>/facts.json`` and the summary; the difference is
what kfp.local and the per-step subprocesses cost (interpreter start, imports of torch/mlflow, artifact copies).
Target ≤ 1.2 for the subprocess runner. Run: ``.venv/bin/python bench/bench_pipeline.py [--profile smoke]
[--runner docker]`` from the repo root (``--runner docker`` needs ``make images``: every task then starts a container).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--runner", choices=("subprocess", "docker"), default="subprocess")
    args = parser.parse_args()

    from pipelines.local import run_local

    with tempfile.TemporaryDirectory(prefix="equiseg-bench-") as tmp:
        os.chdir(tmp)  # a fresh working directory: embedded defaults (runs/, data/, sqlite) land here
        started = time.perf_counter()
        run = run_local(args.profile, runner=args.runner)
        wall = time.perf_counter() - started
        steps = run.summary.get("steps", {})
        assert isinstance(steps, dict)
        step_total = sum(float(s["seconds"]) for s in steps.values())
        print(f"{'step':<24}{'seconds':>10}")
        for name, step in steps.items():
            print(f"{name:<24}{float(step['seconds']):>10.2f}")
        print(f"{'sum of steps':<24}{step_total:>10.2f}")
        print(f"{'pipeline wall time':<24}{wall:>10.2f}")
        print(f"overhead ratio, {args.runner} runner (wall / sum of steps): {wall / step_total:.3f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
