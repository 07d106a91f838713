"""xit-dist: English intermediate-task training for zero-shot cross-lingual transfer, on
Ray Train + DeepSpeed ZeRO, with Ray Tune + Optuna searches and MLflow tracking."""

__version__ = "0.1.0"
