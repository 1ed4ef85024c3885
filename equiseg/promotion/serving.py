"""Serving check: load the model in a FRESH process and run it (the infrastructure check before promotion).

The child process (``python -m equiseg.promotion.serving``) loads a registered model URI (``models:/NAME@challenger``,
``models:/NAME/3``, ``models:/m-<id>``) or a checkpoint through :func:`equiseg.tracking.load_model`, then runs one
seeded random batch for every non-empty subset of the model's modalities and reports, per subset, the logits shape,
whether every value is finite and the latency. A fresh process proves the artifact is loadable from the registry
alone, not from objects that happen to live in the gate's memory (docs/gate.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from equiseg.modalities import channels_of
from equiseg.promotion.verdict import Check
from equiseg.tracking import configure_store, load_model

__all__ = ["ServingReport", "serving_check"]

logger = logging.getLogger(__name__)
_RESULT_MARKER = "EQUISEG_SERVING_RESULT "


@dataclass(frozen=True)
class ServingReport:
    """Outcome of a serving check.

    Attributes:
        model: what was loaded.
        loaded: the child process loaded the model.
        load_s: seconds to load it.
        subsets: one dict per modality subset: ``subset``, ``shape``, ``expected_shape``, ``finite``,
            ``latency_ms``, ``ok``.
        latency_budget_ms: the budget each batch had to meet.
        error: why the child failed, if it did.
    """

    model: str
    loaded: bool
    load_s: float
    latency_budget_ms: float
    subsets: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    @property
    def passed(self) -> bool:
        """Loaded, and every subset produced finite logits of the right shape within the budget."""
        return self.loaded and bool(self.subsets) and all(s["ok"] for s in self.subsets)

    def to_checks(self) -> list[Check]:
        """Gate checks: one for loading, one per modality subset (value = latency, threshold = budget)."""
        if not self.loaded:
            reason = f"the model could not be loaded and run in a fresh process: {self.error or 'unknown error'}"
            return [Check("serving.load", 0.0, 1.0, -1.0, False, reason)]
        checks = [
            Check("serving.load", 1.0, 1.0, 0.0, True, f"the model loads in a fresh process ({self.load_s:.1f}s)")
        ]
        budget = self.latency_budget_ms
        for s in self.subsets:
            subset = "+".join(s["subset"])
            problems = []
            if s["shape"] != s["expected_shape"]:
                problems.append(f"logits shape {s['shape']} != expected {s['expected_shape']}")
            if not s["finite"]:
                problems.append("NaN or inf in the logits")
            if s["latency_ms"] > budget:
                problems.append(f"latency {s['latency_ms']:.0f} ms over the {budget:.0f} ms budget")
            reason = (
                f"serving with {subset}: " + "; ".join(problems)
                if problems
                else f"serving with {subset}: finite logits of the right shape in {s['latency_ms']:.0f} ms"
            )
            checks.append(
                # value = the latency, threshold = the budget (an upper bound: margin = budget - latency)
                Check(f"serving.{subset}", s["latency_ms"], budget, budget - s["latency_ms"], s["ok"], reason)
            )
        return checks

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {
            "model": self.model,
            "loaded": self.loaded,
            "load_s": self.load_s,
            "latency_budget_ms": self.latency_budget_ms,
            "subsets": self.subsets,
            "error": self.error,
            "passed": self.passed,
        }


def serving_check(
    model: str,
    *,
    tracking_uri: str | None = None,
    image_size: int = 64,
    batch_size: int = 2,
    latency_budget_ms: float = 5000.0,
    timeout_s: float = 300.0,
    seed: int = 0,
) -> ServingReport:
    """Load ``model`` (model URI or checkpoint path) in a fresh Python process and run every modality subset.

    Never raises for a broken model: the report says what failed (a crash, a timeout, a wrong shape, NaNs or a
    slow batch), so the gate can record it as a failed check.
    """
    cmd = [
        sys.executable,
        "-m",
        "equiseg.promotion.serving",
        "--model",
        model,
        "--image-size",
        str(image_size),
        "--batch-size",
        str(batch_size),
        "--budget-ms",
        str(latency_budget_ms),
        "--seed",
        str(seed),
    ]
    if tracking_uri:
        cmd += ["--tracking-uri", tracking_uri]
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        return ServingReport(model, False, 0.0, latency_budget_ms, error=f"timed out after {timeout_s:.0f}s")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_MARKER):
            raw = json.loads(line[len(_RESULT_MARKER) :])
            raw.pop("passed", None)
            return ServingReport(**raw)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return ServingReport(
        model, False, 0.0, latency_budget_ms, error=f"exit code {proc.returncode}: {' | '.join(tail) or 'no output'}"
    )


# --------------------------------------------------------------------------------------------------------------------
# The child process
# --------------------------------------------------------------------------------------------------------------------


def _load(model: str, tracking_uri: str | None) -> Any:
    """The network behind ``model``; typed ``Any`` because equiseg models carry ``modalities`` and ``num_classes``."""
    if tracking_uri:
        configure_store(tracking_uri)
    return load_model(model, device="cpu")


def _run_child(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "model": args.model,
        "loaded": False,
        "load_s": 0.0,
        "latency_budget_ms": args.budget_ms,
        "subsets": [],
        "error": "",
    }
    started = time.perf_counter()
    try:
        net = _load(args.model, args.tracking_uri)
    except Exception as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        return report
    report["loaded"], report["load_s"] = True, round(time.perf_counter() - started, 3)
    modalities = tuple(net.modalities)
    in_chans = dict(getattr(net, "build_kwargs", {}).get("in_chans") or {})
    generator = torch.Generator().manual_seed(args.seed)
    size, batch = args.image_size, args.batch_size
    full = {
        m: torch.randn(batch, in_chans.get(m) or channels_of(m), size, size, generator=generator) for m in modalities
    }
    expected = [batch, int(net.num_classes), size, size]
    with torch.inference_mode():
        try:
            net(full)  # warm-up: lazy initialisation must not count against the budget
            for k in range(len(modalities), 0, -1):
                for subset in itertools.combinations(modalities, k):
                    t0 = time.perf_counter()
                    out = net({m: full[m] for m in subset})
                    latency = (time.perf_counter() - t0) * 1000.0
                    logits = out.logits if hasattr(out, "logits") else out
                    shape, finite = list(logits.shape), bool(torch.isfinite(logits).all())
                    report["subsets"].append(
                        {
                            "subset": list(subset),
                            "shape": shape,
                            "expected_shape": expected,
                            "finite": finite,
                            "latency_ms": round(latency, 2),
                            "ok": shape == expected and finite and latency <= args.budget_ms,
                        }
                    )
        except Exception as exc:
            report["error"] = f"{type(exc).__name__} while running the model: {exc}"
            report["subsets"].append(
                {
                    "subset": ["<run>"],
                    "shape": [],
                    "expected_shape": expected,
                    "finite": False,
                    "latency_ms": 0.0,
                    "ok": False,
                }
            )
    return report


def main(argv: list[str] | None = None) -> None:
    """Child entry point: print one ``EQUISEG_SERVING_RESULT {json}`` line."""
    parser = argparse.ArgumentParser(description="equiseg serving check child process (see serving_check)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--budget-ms", type=float, default=5000.0)
    parser.add_argument("--seed", type=int, default=0)
    report = _run_child(parser.parse_args(argv))
    sys.stdout.write(_RESULT_MARKER + json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
