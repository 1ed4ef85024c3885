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
import sqlalchemy
from sqlalchemy.exc import SQLAlchemyError
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
        self._engine: sqlalchemy.engine.Engine | None = None

    def _study_exists(self) -> bool:
        """Whether the study's row exists, read with plain SQL: opening an optuna storage creates its tables, and
        doing that while the study itself creates them makes one of the two fail."""
        if self.storage.startswith("sqlite:///") and not Path(self.storage[len("sqlite:///") :]).is_file():
            return False  # connecting would create the file
        if self._engine is None:
            self._engine = sqlalchemy.create_engine(self.storage)
        try:
            with self._engine.connect() as conn:
                query = sqlalchemy.text("SELECT 1 FROM studies WHERE study_name = :name")
                return conn.execute(query, {"name": self.study_name}).first() is not None
        except SQLAlchemyError:
            return False  # no tables yet

    def _finished(self) -> list[optuna.trial.FrozenTrial] | None:
        """The study's finished trials, or None while it does not exist (or is busy)."""
        if not self._study_exists():
            return None
        try:
            study = optuna.load_study(study_name=self.study_name, storage=self.storage)
            return study.get_trials(deepcopy=False, states=_FINISHED)
        except Exception:  # progress is best effort: the storage may be busy
            return None

    def _poll(self, bar: tqdm) -> None:
        trials = self._finished()
        if trials is None:
            return
        bar.n = min(self.total, len(trials) - (self._baseline or 0))
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
            self._baseline = len(self._finished() or [])  # trials of earlier runs of a continued study
            self._thread = threading.Thread(target=self._run, name="equiseg-tune-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._engine is not None:
            self._engine.dispose()
