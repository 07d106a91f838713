"""Hyperparameter search per intermediate task: Ray Tune runs the trials (each one a Train V2
driver that builds its own ``TorchTrainer``), Optuna's TPE proposes them, ASHA stops the weak
ones early, MLflow keeps one parent run per search and one child run per trial.

Modules: ``search_spec`` (the YAML a user writes), ``trial`` (what one trial runs),
``optuna_search`` (how Optuna hears about trials, pruned ones included), ``search`` (the Tuner,
new or restored), ``best`` (the best configuration, written out and read back by specs).
"""
