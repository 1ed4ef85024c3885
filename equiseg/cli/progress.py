"""Progress of ``equiseg tune``: a bar over finished trials, read from the study's own storage.

The trials run in worker processes the CLI does not see (``equiseg.tuning.run_study``), so a background thread
polls the Optuna storage every couple of seconds and moves a tqdm bar on stderr: finished trials out of the
requested number, and the best objective so far.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

import optuna
from tqdm import tqdm

from equiseg.config import EquisegConfig

__all__ = ["TrialProgress"]

_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


class TrialProgress:
    """Context manager: a bar of finished trials while the block runs (nothing when ``enabled`` is False).

    Args:
        cfg: the resolved config (study name, default trial count).
        storage: the study's storage URL; an SQLite file is only read once the study has created it.
        trials: trials this run adds (default ``cfg.tune.trials``).
        interval_s: seconds between polls.
    """

    def __init__(
        self,
        cfg: EquisegConfig,
        storage: str,
        *,
        trials: int | None = None,
        enabled: bool = True,
        interval_s: float = 2.0,
    ) -> None:
        self.study_name = cfg.tune.study_name
        self.storage = storage
        self.total = trials or cfg.tune.trials
        self.enabled = enabled
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._baseline: int | None = None

    def _poll(self, bar: tqdm) -> None:
        if self.storage.startswith("sqlite:///") and not Path(self.storage[len("sqlite:///") :]).is_file():
            return  # the study has not created its file yet; opening it here would race the creation
        try:
            study = optuna.load_study(study_name=self.study_name, storage=self.storage)
            trials = study.get_trials(deepcopy=False, states=_FINISHED)
        except Exception:  # progress is best effort: the study may not exist yet, or be busy
            return
        if self._baseline is None:
            self._baseline = len(trials)
        bar.n = min(self.total, len(trials) - self._baseline)
        done = [t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
        if done:
            bar.set_postfix(best=f"{max(done):.3f}", refresh=False)
        bar.refresh()

    def _run(self) -> None:
        with tqdm(total=self.total, desc="tune trials", unit="trial", dynamic_ncols=True) as bar:
            while not self._stop.wait(self.interval_s):
                self._poll(bar)
            self._poll(bar)

    def __enter__(self) -> TrialProgress:
        if self.enabled:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            self._thread = threading.Thread(target=self._run, name="equiseg-tune-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
