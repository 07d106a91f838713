"""Ray Tune's ``OptunaSearch`` with three changes a search here needs.

1. **Trials ASHA stops are PRUNED, not COMPLETE.** Stock ``OptunaSearch`` tells Optuna every trial
   that has the metric in its last result as COMPLETE with that value, so a trial ASHA stopped
   after a few hundred steps would count as a finished configuration with a (low, early) score,
   and TPE would learn from it as if it were. Here a trial whose last result lacks the worker's
   ``finished`` marker (the phase's final report) and that did not fail is told as
   ``TrialState.PRUNED``, after its last score is reported as an intermediate value at its step:
   TPE then treats it as Optuna's own pruners' trials are treated (ranked by how far it got,
   then by that value), and ``study.best_trial`` only ever names a trial that trained to the end.
2. **Intermediate values at optimizer steps.** Each English-dev validation is reported to the
   trial at its ``global_step`` (stock: Tune's report count), so trials line up by training done.
3. **Stable trial numbers and no orphans.** Each suggested config carries the Optuna trial
   number; the trial's directory and MLflow run are named after it. If the driver dies after
   Optuna created a trial but before Tune saved it, the study holds a RUNNING trial Tune never
   heard of; the next suggestion after a resume adopts it (same number, same parameters)
   instead of asking a new one, so the study has exactly ``num_samples`` trials.
4. **No repeated draws after a resume.** TPE's random generator comes back as it was when the
   searcher was last saved (or as it was seeded, when it never was), so a resumed search would
   draw again values it already tried. The first suggestion in a process reseeds the sampler
   with the search's seed plus the number of trials in the study: a new search is seeded as
   given, a resumed one draws new values, both reproducibly.
5. **Stopping early.** Before each suggestion the search's stop rule (tune/stopping.py) is
   checked against the study and the search's clock; once it holds, the searcher answers
   ``FINISHED`` (Tune starts no more trials, running ones finish) and records why.
6. **The study decides once.** The study file is written at once, Tune's experiment state only
   every few seconds: after a kill, Tune may restart a trial the study has already finished.
   Its results are then not reported again (Optuna refuses to update a finished trial), and the
   trial itself replays the study's decision (``decided_trial``): a pruned trial stays pruned.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from xit_dist.config import layout

FINISHED_KEY = "finished"      # set by the worker's final report only (xit_dist/train/worker.py)
STEP_KEY = "global_step"
TRIAL_NUMBER = "trial_number"  # config keys of a trial: its Optuna number and the sampled values
VALUES = "training"


def study_storage(search_dir: Path):
    """The study's storage: Optuna's journal file, safe for several processes to read."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(layout.study_file(search_dir))))


def decided_trial(search_dir: Path, study_name: str, number: int):
    """The study's finished trial with this number (a ``FrozenTrial``), or None."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=study_storage(search_dir))
    found = [t for t in study.get_trials(deepcopy=False) if t.number == number and t.state.is_finished()]
    return found[0] if found else None


class PruningAwareOptunaSearch(OptunaSearch):
    def __init__(self, *args, seed: int, search_dir: Path | None = None, **kwargs):
        super().__init__(*args, sampler=self._tpe(seed), **kwargs)
        self._xit_seed = seed
        self._sampler_process: int | None = None
        self._search_dir = search_dir

    @staticmethod
    def _tpe(seed: int):
        import optuna

        return optuna.samplers.TPESampler(seed=seed)

    def _sync_sampler(self) -> None:
        """See 4. above."""
        if self._sampler_process == os.getpid():
            return
        self._sampler = self._ot_study.sampler = self._tpe(self._xit_seed + len(self._ot_study.get_trials(deepcopy=False)))
        self._sampler_process = os.getpid()

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._sampler_process = None

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        self._sync_sampler()
        reason = self._stop_reason()
        if reason is not None:
            return self.FINISHED
        if trial_id not in self._ot_trials:
            self._adopt_orphan(trial_id)
        values = super().suggest(trial_id)
        if values is None:
            return None
        return {VALUES: values, TRIAL_NUMBER: self._ot_trials[trial_id].number}

    def _stop_reason(self) -> str | None:
        """See 5. above; the reason is recorded (and said) the first time."""
        from optuna.trial import TrialState

        from xit_dist.console import say
        from xit_dist.tune import stopping

        if self._search_dir is None:
            return None
        no_improvement, budget = stopping.rule(self._search_dir)
        if not no_improvement and not budget:
            return None
        trials = self._ot_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        completed = [stopping.Completed(t.number, t.value) for t in trials if t.value is not None]
        reason = stopping.stop_reason(completed, self._mode, no_improvement, budget, stopping.spent_seconds(self._search_dir))
        if reason is not None and stopping.stopped_because(self._search_dir) is None:
            stopping.record_stop(self._search_dir, reason)
            say(f"== search stops starting trials: {reason}")
        return reason

    def _adopt_orphan(self, trial_id: str) -> None:
        import optuna
        from optuna.trial import TrialState

        # ``_trial_id`` is the storage's id of a trial, what ``optuna.trial.Trial`` is built from.
        known = {trial._trial_id for trial in self._ot_trials.values()}
        orphans = [t for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t._trial_id not in known]
        if orphans:
            self._ot_trials[trial_id] = optuna.trial.Trial(self._ot_study, min(orphans, key=lambda t: t.number)._trial_id)

    def _relink(self, trial_id: str, result: dict | None) -> bool:
        """Whether this Tune trial is known; a trial Tune saved after the searcher last did is
        linked again through the Optuna number in its config (results carry the config)."""
        if trial_id in self._ot_trials:
            return True
        number = (result or {}).get(f"config/{TRIAL_NUMBER}", ((result or {}).get("config") or {}).get(TRIAL_NUMBER))
        found = [t for t in self._ot_study.get_trials(deepcopy=False) if t.number == number]
        if not found:
            return False
        import optuna

        self._ot_trials[trial_id] = optuna.trial.Trial(self._ot_study, found[0]._trial_id)
        return True

    def _decided(self, trial_id: str) -> bool:
        """Whether the study has finished this trial already (see 5. above)."""
        if trial_id in self._completed_trials:
            return True
        number = self._ot_trials[trial_id].number
        if any(t.number == number and t.state.is_finished() for t in self._ot_study.get_trials(deepcopy=False)):
            self._completed_trials.add(trial_id)
            return True
        return False

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.metric not in result or not self._relink(trial_id, result) or self._decided(trial_id):
            return
        self._ot_trials[trial_id].report(result[self.metric], int(result[STEP_KEY]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if not self._relink(trial_id, result) or self._decided(trial_id):
            return
        stopped_early = bool(result) and not error and not result.get(FINISHED_KEY) and self.metric in result
        if not stopped_early:
            super().on_trial_complete(trial_id, result, error)
            return
        from optuna.trial import TrialState

        trial = self._ot_trials[trial_id]
        trial.report(result[self.metric], int(result[STEP_KEY]))  # the score it was stopped on
        self._ot_study.tell(trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)
