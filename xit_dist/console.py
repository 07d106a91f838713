"""Keep the console readable: our progress lines (``say``) and result tables, not every
library's progress bars and load reports. Called in the driver and in every Ray worker."""

from __future__ import annotations

import os
import sys
import time

_START = time.monotonic()


def say(message: str) -> None:
    """A driver progress line, stamped with the seconds since the process started."""
    stamp = time.monotonic() - _START
    print(f"[{stamp:6.1f}s] {message}" if message else "", file=sys.stdout, flush=True)


# Ray Train V2 re-routes workers' print() through its logger, which doubles every line.
WORKER_ENV = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore::FutureWarning"}


def quiet_third_party() -> None:
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    import torch

    if not torch.cuda.is_available():  # saves DeepSpeed's "Setting accelerator to CPU" warning
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import logging

    import datasets
    import transformers

    # Ray Train logs every report() at INFO on the workers ("Reporting training result ...").
    # Its logger is named after the module's file path, not its dotted name.
    try:
        from ray.train.v2._internal.execution import context as train_context

        logging.getLogger(train_context.__file__).setLevel(logging.WARNING)
    except ImportError:  # another Ray layout: the lines are noise, not errors
        pass

    # MLflow's system-metrics monitor says at INFO that it starts, stops, and skips GPU metrics.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
