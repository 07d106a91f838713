"""MLflow's system metrics (CPU, memory, disk, network, and GPU utilisation and memory where a
GPU is) of every node a phase runs on, logged to the phase's run as ``system/<node>/...``.

One worker per node samples (its local rank 0), so a node's numbers are not logged once per GPU;
the node id is ``node<k>``, k the node's rank in the worker group. MLflow's own monitor does the
sampling (``mlflow.system_metrics``); it stops by itself when the run ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from xit_dist.train.job import PhaseJob


@contextlib.contextmanager
def node_system_metrics(job: PhaseJob) -> Iterator[None]:
    """Sample this node's system metrics while the block runs (local rank 0 only; off when the
    job has no MLflow run or an interval of 0). A monitor that cannot start never stops training."""
    import ray.train

    context = ray.train.get_context()
    if not (job.tracking_uri and job.mlflow_run_id and job.system_metrics_interval_s > 0) or context.get_local_rank() != 0:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(
        job.mlflow_run_id, sampling_interval=job.system_metrics_interval_s, resume_logging=True,
        node_id=f"node{context.get_node_rank()}", tracking_uri=job.tracking_uri,
    )
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
        publish_last_window(monitor)


def publish_last_window(monitor) -> None:
    """MLflow's monitor drops the samples of the window it is in when it stops: a phase shorter
    than one interval would have none. Its last window is logged here, after its thread ended."""
    try:
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
    except Exception as err:  # the store is down: the phase's own metrics say so already
        print(f"system metrics: last sample not logged ({type(err).__name__})", flush=True)
