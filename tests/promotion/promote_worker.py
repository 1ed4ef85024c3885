"""Run one promotion in its own process (for the race and SIGKILL tests).

Usage: promote_worker.py TRACKING_URI MODEL VERSION [--kill-at STEP] [--barrier DIR --parties N]
Exit codes: 0 promoted, 3 champion moved (lost the race), 4 other refusal.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from equiseg.promotion import ChampionMovedError, PromotionError, promote

parser = argparse.ArgumentParser()
parser.add_argument("tracking_uri")
parser.add_argument("model")
parser.add_argument("version")
parser.add_argument("--kill-at", default="")
parser.add_argument("--barrier", default="", help="folder where all racing workers check in before starting")
parser.add_argument("--parties", type=int, default=1)
args = parser.parse_args()


def on_step(step: str) -> None:
    if step == args.kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)  # widen the window in which a racing process could interleave


if args.barrier:  # start together: wait until every racing worker has imported everything
    Path(args.barrier, str(os.getpid())).touch()
    while len(list(Path(args.barrier).iterdir())) < args.parties:
        time.sleep(0.005)
try:
    result = promote(args.model, args.version, mode="enabled", tracking_uri=args.tracking_uri, on_step=on_step)
except ChampionMovedError as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(3)
except PromotionError as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(4)
print(json.dumps({"action": result.action, "champion": result.champion}))
