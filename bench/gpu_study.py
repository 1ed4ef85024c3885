"""Run a study profile on one GPU within a time budget: every model x seed x dominance setting as its own process,
many at once (docs/results.md, "Study").

Tiny models leave a large GPU mostly idle, so ``--jobs`` runs train side by side (each its own CUDA context). The
data of every dominance setting is generated first, in this process; then runs are launched seed-major until
``--deadline-s``; runs still going at ``--deadline-s + --grace-s`` are stopped (they resume from their ``last.pt``
on the next call, finished ones are reused; a run another process holds is left to it). Each finished run leaves
its summary JSON under ``experiment.summary_dir``; with ``--out`` they (and ``gpu_study.json``, the timings) are
copied there, to bring back and analyse with ``equiseg experiment study --profile <profile> --analyse-only``.

Needs only the core dependencies (torch, numpy, pyarrow, PIL, yaml); no mlflow, kfp or click.

    python bench/gpu_study.py --profile study-gpu --jobs 10 --deadline-s 540 --out "$OUT"
    python bench/gpu_study.py --profile study-smoke --set train.device=cpu --jobs 2   # the CPU check
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from equiseg.config import load_config  # noqa: E402
from equiseg.experiments.plan import cell_config, eval_hash, train_hash  # noqa: E402
from equiseg.experiments.runs import prepare_claim_data  # noqa: E402
from equiseg.experiments.study import (  # noqa: E402
    EXIT_BUSY,
    level_config,
    study_levels,
    summary_dir,
    summary_path,
)

logger = logging.getLogger("gpu_study")


def _pending(cfg, levels: list[float]) -> list[tuple[float, str, int]]:  # type: ignore[no-untyped-def]
    """Runs without a matching summary, seed-major then setting (every setting gets its first seeds first)."""
    tasks = []
    for seed in cfg.experiment.seeds:
        for level in levels:
            lcfg = level_config(cfg, level)
            for model in cfg.experiment.models:
                path = summary_path(cfg, level, model, seed)
                if path.is_file():
                    raw = json.loads(path.read_text())
                    run_cfg = cell_config(lcfg, model, seed)
                    if (raw.get("train_hash"), raw.get("eval_hash")) == (train_hash(run_cfg), eval_hash(run_cfg)):
                        continue
                tasks.append((level, model, seed))
    return tasks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="study-gpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--jobs", type=int, default=10, help="runs at once")
    parser.add_argument("--deadline-s", type=float, default=540.0, help="launch no run after this many seconds")
    parser.add_argument("--grace-s", type=float, default=30.0, help="then stop runs still going after this")
    parser.add_argument("--out", type=Path, help="copy the summaries and gpu_study.json here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.monotonic()
    cfg = load_config(args.profile, tuple(args.overrides))
    levels = study_levels(cfg)
    for level in levels:
        prepare_claim_data(level_config(cfg, level), progress=False)
    logger.info("data ready in %.0fs", time.monotonic() - started)
    tasks = _pending(cfg, levels)
    logger.info("%d runs to do, %d at once", len(tasks), args.jobs)
    logs = Path(cfg.experiment.output_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.setdefault("OMP_NUM_THREADS", "1")
    sets = [f"--set={item}" for item in args.overrides]
    running: dict[tuple[float, str, int], tuple[subprocess.Popen[bytes], float]] = {}
    timings: list[dict[str, object]] = []
    while tasks or running:
        now = time.monotonic() - started
        while tasks and len(running) < args.jobs and now < args.deadline_s:
            level, model, seed = tasks.pop(0)
            log = (logs / f"{level:g}-{model}-seed{seed}.log").open("wb")
            command = [sys.executable, "-m", "equiseg.experiments.study", "--profile", args.profile, *sets]
            command += ["--only", f"{level},{model},{seed}", "--no-progress"]
            running[(level, model, seed)] = (
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env),
                now,
            )
        if now >= args.deadline_s:
            tasks.clear()  # counted again below as not started
        for key, (proc, begun) in list(running.items()):
            code = proc.poll()
            if code is None and now > args.deadline_s + args.grace_s:
                proc.terminate()
                code = proc.wait()
                logger.info("stopped %s at the deadline (resumes next call)", key)
            if code is not None:
                del running[key]
                timings.append({"run": list(key), "exit": code, "seconds": round(now - begun, 1)})
                if code == EXIT_BUSY:
                    logger.info("%s is running in another process: left to it", key)
                else:
                    logger.info("%s exit %d after %.0fs", key, code, now - begun)
        time.sleep(1.0)
    report = {
        "profile": args.profile,
        "overrides": args.overrides,
        "jobs": args.jobs,
        "wall_seconds": round(time.monotonic() - started, 1),
        "runs": timings,
        "not_started": len(_pending(cfg, levels)),
    }
    folder = summary_dir(cfg)
    (Path(cfg.experiment.output_dir) / "gpu_study.json").write_text(json.dumps(report, indent=1))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_study.json").write_text(json.dumps(report, indent=1))
        for path in sorted(folder.rglob("*-seed*.json")):
            target = args.out / "summaries" / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    busy = [t for t in timings if t["exit"] == EXIT_BUSY]
    failed = [t for t in timings if t["exit"] not in (0, EXIT_BUSY)]
    logger.info(
        "done in %.0fs: %d runs finished, %d failed or stopped, %d left to another process",
        report["wall_seconds"],
        len(timings) - len(failed) - len(busy),
        len(failed),
        len(busy),
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
