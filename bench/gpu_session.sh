#!/usr/bin/env bash
# One lent-GPU session, prepared to run once (the GPU check + the claim-gpu cells).
#
# Runs from a plain checkout on a bare GPU box (torch, numpy, pyarrow; no mlflow, kfp or click):
#   1. bench/gpu_check.py: bf16 training throughput, peak memory, MFU and an overfit sanity check (equiseg_b2, 512²);
#      then bench/bench_speed.py (SKIP_SPEED=1 skips it): equiseg_b2 vs SMP Segformer-B2, eager and compiled, MFU;
#   2. the claim experiment's runs (configs/claim-gpu.yaml) for at most CLAIM_SECONDS, seed-major, resumable: a
#      second call on the same warm machine continues where the first stopped (runs/claim-gpu is kept there).
# Small results (gpu_check.json; per run cell.json, robustness.json, confusion.npz) are copied to $OUT; analyse
# them here with `equiseg experiment claim --profile claim-gpu --analyse-only --set experiment.output_dir=<copy>`.
#
# Usage: OUT=/tmp/out CHECK_SECONDS=150 CLAIM_SECONDS=300 bash bench/gpu_session.sh
set -uo pipefail
OUT=${OUT:-/tmp/equiseg-gpu-out}
CHECK_SECONDS=${CHECK_SECONDS:-150}
CLAIM_SECONDS=${CLAIM_SECONDS:-300}
CLAIM_SET=${CLAIM_SET:-}
PY=${PYTHON:-python3}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$(pwd)
mkdir -p "$OUT"

echo "== environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" - <<'PY' 2>&1 | tee "$OUT/environment.txt"
import importlib, sys
print("python", sys.version.split()[0])
for name in ("torch", "timm", "numpy", "pyarrow", "PIL", "yaml", "tqdm", "mlflow", "kfp", "matplotlib", "click"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as exc:  # noqa: BLE001 - report every missing package, keep going
        print(name, "MISSING", type(exc).__name__)
PY

if [ "${SKIP_CHECK:-0}" != "1" ]; then
  echo "== gpu_check (limit ${CHECK_SECONDS}s)"
  timeout "$CHECK_SECONDS" "$PY" bench/gpu_check.py --out "$OUT/gpu_check.json" 2>&1 | tail -40
  echo "gpu_check exit ${PIPESTATUS[0]}"
fi

if [ "${SKIP_SPEED:-0}" != "1" ]; then
  # equiseg_b2 RGB-D-T vs SMP Segformer(mit_b2) RGB, eager and compiled, MFU against a bf16 matmul, loader alone.
  # SMP must be importable: on an offline box carry a `pip install --target .bench-deps segmentation-models-pytorch`
  # folder (its dependencies included) and set BENCH_DEPS=.bench-deps.
  echo "== bench_speed (limit ${SPEED_SECONDS:-300}s)"
  PYTHONPATH=${BENCH_DEPS:+$BENCH_DEPS:}$PYTHONPATH timeout "${SPEED_SECONDS:-300}" "$PY" bench/bench_speed.py \
    --out "$OUT/speed.json" 2>&1 | grep -v "^round\|^warm-up" | tail -20
  echo "bench_speed exit ${PIPESTATUS[0]}"
fi

echo "== claim-gpu runs (limit ${CLAIM_SECONDS}s)"
timeout "$CLAIM_SECONDS" "$PY" - "$CLAIM_SET" <<'PY' 2>&1 | grep -v "it/s\]$" | tail -40
import logging, sys, time
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
from equiseg.config import load_config
from equiseg.experiments.runs import run_cells
overrides = [item for item in sys.argv[1].split(";") if item]
cfg = load_config("claim-gpu", overrides)
started = time.perf_counter()
for record in run_cells(cfg, progress=False):
    print(f"{record.model} seed {record.seed}: train {record.train_seconds:.0f}s eval {record.eval_seconds:.0f}s "
          f"clean {record.summary['clean_miou']:.1f} emm {record.summary['emm_avg']:.1f}", flush=True)
print(f"all runs done in {time.perf_counter() - started:.0f}s")
PY
echo "claim exit ${PIPESTATUS[0]}"

echo "== copying results"  # flat: <OUT>/claim-gpu-cells/<run>/<file> (the device tool returns shallow folders)
if [ -d runs/claim-gpu/cells ]; then
  for cell in runs/claim-gpu/cells/*/; do
    name=$(basename "$cell")
    mkdir -p "$OUT/claim-gpu-cells/$name"
    for f in cell.json robustness.json confusion.npz; do
      [ -f "$cell/$f" ] && cp "$cell/$f" "$OUT/claim-gpu-cells/$name/"
    done
  done
fi
find "$OUT" -type f | sort | head -80
