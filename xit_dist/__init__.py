"""xit-dist: English intermediate-task training for zero-shot cross-lingual transfer, on
Ray Train + DeepSpeed ZeRO, with Ray Tune + Optuna searches and MLflow tracking.

The package is layered; each layer imports only the layers below it (checked by ``lint-imports``
with the contracts in pyproject.toml): ``cli`` -> ``report`` and ``tune`` -> ``run`` -> ``plan``
-> ``train`` -> ``config`` -> ``tasks``, ``data``, ``evaluate`` and ``builtin`` -> ``tracking`` ->
``errors`` and ``console``.
"""

__version__ = "0.1.0"
