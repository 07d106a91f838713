"""Every ``xit.*`` MLflow tag name, in one place: the tags are how runs are found again (resume,
grids, searches) and how ``report`` and ``ui`` read them back, so a name written here is part of
the on-disk MLflow layout and never changes.

It sits in ``tracking`` (not ``run``) because ``tracking/store.py`` itself finds runs by tags, and
``plan``, ``tune`` and ``report`` read them too: the lowest layer that all of them may import.
"""

from __future__ import annotations

# MLflow's own: a nested run's parent (written by Tracker.nested_run, searched by Tracker._find).
PARENT_TAG = "mlflow.parentRunId"
# MLflow's own experiment tag: which kind of experiment (the UI's "Machine learning" kind is
# custom_model_development; MLflow 3.17's UI itself follows its sidebar switch, ``?workflowType=``).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_EXPERIMENT = "custom_model_development"

# --- finding runs again (tracking/store.py)
SPEC_TAG = "xit.spec_fingerprint"    # a parent run: the spec's fingerprint; a rerun of the spec finds it
PHASE_TAG = "xit.phase_hash"         # a phase's child run: the phase hash; a rerun or another cell finds it

# --- what a run is (run/runs.py writes; report, ui and the MLflow UI filter on them)
KIND_TAG = "xit.kind"                # a run's kind: a phase kind, "evaluation", "search", "trial", "report", "summary"
TARGET_TAG = "xit.target"            # a parent run: the target task (report/tables.py reads it)
INTERMEDIATE_TAG = "xit.intermediate"  # parent, search and trial runs: the intermediate task(s), "a,b" or "none"
PHASE_ID_TAG = "xit.phase_id"        # a phase's child run: its phase id (the directory under phases/)
TASK_TAG = "xit.task"                # a phase's child run: the task it trains or evaluates
TRAINED_IN_TAG = "xit.trained_in"    # a cell's phase run trained by another cell: that cell's name (run/runs.py)
SETTING_TAG = "xit.setting"          # a parent run: its setting (the spec's fingerprint without seed, name, output_dir)

# --- seed summaries (run/runs.py): one run per setting, mean and std over its finished seeds
SUMMARY_OF_TAG = "xit.summary_of"    # the summary run: the setting it aggregates (found again by it)
SEEDS_TAG = "xit.seeds"              # the summary run: the seeds aggregated, "0,1,2"

# --- grids (plan/grid.py writes on each cell's parent run; report/tables.py reads)
GRID_TAG = "xit.grid"                # the grid's name: `report --grid` selects cells by it
CELL_TAG = "xit.cell"                # the cell's name within its grid
STUDY_TAG = "xit.study"              # the grid's study: which report section renders it
SEED_TAG = "xit.seed"                # the cell's seed: report averages over seeds
AXIS_TAG_PREFIX = "xit.axis."        # + axis name: the cell's label on that axis (report's rows and columns)
CELLS_TAG = "xit.grid_cells"         # how many cells the grid has: report says which are missing
INDEX_TAG = "xit.cell_index"         # the cell's position in grid order: reports keep the grid's row order

# --- reports (report/tables.py): the report run of a grid, replaced on every report
REPORT_TAG = "xit.report_for"        # the grid name the report run belongs to

# --- searches (tune/): the search's parent run and one child run per trial
SEARCH_TAG = "xit.search"            # search and trial runs: the search's name (run/runs.py search_tags)
OBJECTIVE_TAG = "xit.objective"      # the search run: the metric it optimises
OBJECTIVE_TASK_TAG = "xit.objective_task"  # the search run: the task whose metric is the objective
BEST_TRIAL_TAG = "xit.best_trial"    # the search run: the number of the best trial, once known
STOP_REASON_TAG = "xit.stop_reason"      # a search parent: why it stopped before num_samples (tune/stopping.py)
TRIAL_TAG = "xit.trial_number"       # a trial's child run under the search's parent: its number
TRIAL_STATE_TAG = "xit.trial_state"  # a trial's child run: completed / pruned / failed (tune/callbacks.py)

# Not an MLflow tag: Ray Jobs metadata on a submitted job (run/submit.py), the spec file's name.
SPEC_METADATA_KEY = "xit.spec"

# Values of KIND_TAG that are not a phase kind ("intermediate", "target").
EVALUATION_KIND = "evaluation"
SEARCH_KIND = "search"
TRIAL_KIND = "trial"
REPORT_KIND = "report"
SUMMARY_KIND = "summary"
