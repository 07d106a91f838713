"""Submitting runs to a Ray cluster through Ray's Jobs API (``xit-dist submit/jobs/logs/stop``).

A job ships the repository as its ``working_dir`` (without the virtual environment, run outputs,
stores and caches), passes a fixed list of environment variables from the submitter (their names
are printed, never their values) and runs ``python -m xit_dist.cli run SPEC --set
distributed.address=auto`` on the cluster, where the driver joins the cluster it runs on.
The spec is validated here first: a bad spec or an address nobody answers at costs one line and
exit code 2, and nothing is submitted.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from pathlib import Path

from xit_dist.config.paths import is_uri
from xit_dist.errors import XitError
from xit_dist.run.object_store import check_output_store
from xit_dist.tracking.object_files import is_object_store_uri
from xit_dist.tracking.tags import SPEC_METADATA_KEY

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ADDRESS = "http://127.0.0.1:8265"

# Uploaded with every job: the repository minus what is large, local or secret-prone.
EXCLUDES = [
    ".venv", "venv", ".git", "__pycache__", "*.pyc", ".pytest_cache", "*.egg-info", "build", "dist",
    "xit_runs", "mlruns", "mlartifacts", "ray_results", "checkpoints", "*.db", "*.pt", "*.safetensors",
    ".xit_cluster", ".env",
]

# Passed from the submitter's environment to the job (and through it to the training workers)
# when set. Values are never printed or logged, only the names.
PASSED_ENV = (
    "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
    "HF_TOKEN", "HF_HOME", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "XIT_DIST_CACHE",
    "NCCL_SOCKET_IFNAME", "NCCL_IB_DISABLE", "NCCL_DEBUG", "TORCH_NCCL_ASYNC_ERROR_HANDLING",
    # an output_dir in a bucket: the AWS SDK's (and pyarrow's) variables, and Google's
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
    "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "MLFLOW_S3_ENDPOINT_URL", "GOOGLE_APPLICATION_CREDENTIALS",
)

# A spec outside the repository travels as text in this variable; the entrypoint writes it to a
# temporary file on the cluster.
SPEC_ENV = "XIT_DIST_SPEC_YAML"


def resolve_address(address: str | None) -> str:
    address = address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    if "://" not in address:
        address = f"http://{address}"
    return address


def _enable_token_auth() -> None:
    """Ray's clients only send the cluster token when RAY_AUTH_MODE=token (measured with Ray
    2.60: with the mode unset the Jobs API answers 401 even though ~/.ray/auth_token exists).
    Turn it on when the user has a token and has not chosen a mode."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
        if "ray" in sys.modules:  # refresh Ray's cached config if it was read already
            try:
                from ray._raylet import Config

                Config.initialize("")
            except Exception:  # an older or newer Ray: the environment variable is what counts
                pass


def connect(address: str | None):
    """A ``JobSubmissionClient`` for the address, or one line naming the address."""
    address = resolve_address(address)
    _enable_token_auth()
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as err:  # ConnectionError, AuthenticationError, ValueError (bad address)
        reason = " ".join(str(err).split())
        if "uthentication" in type(err).__name__ or "401" in reason or "Unauthorized" in reason:
            raise XitError(
                f"address: the Ray cluster at {address} did not accept this client's auth token (none sent, or not the cluster's): "
                "set RAY_AUTH_MODE=token and put the cluster's token in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN"
            ) from None
        if isinstance(err, ConnectionError) or "Failed to connect" in reason:
            raise XitError(f"address: no Ray dashboard (Jobs API) answers at {address}; start one (bash cluster/local.sh up) or pass --address") from None
        raise XitError(f"address: cannot use Ray cluster address {address}: {reason[:300]}") from None


def _passed_env() -> dict[str, str]:
    return {name: os.environ[name] for name in PASSED_ENV if os.environ.get(name)}


def _spec_argument(spec_path: Path) -> tuple[str, str, dict[str, str]]:
    """How the entrypoint names the spec: its path relative to the repository when it is
    shipped in the working_dir, else a temporary file written on the cluster from SPEC_ENV.
    Returns (shell prelude, spec argument, extra env_vars)."""
    resolved = spec_path.resolve()
    try:
        relative = resolved.relative_to(REPO_ROOT)
    except ValueError:
        relative = None
    if relative is not None and not any(part in EXCLUDES for part in relative.parts):
        return "", shlex.quote(relative.as_posix()), {}
    prelude = f'spec="$(mktemp --suffix=.yaml)" && printf "%s" "${SPEC_ENV}" > "$spec" && '
    return prelude, '"$spec"', {SPEC_ENV: resolved.read_text()}


def build_submission(spec_path: str, overrides: list[str]) -> tuple[str, dict]:
    """The entrypoint and runtime_env of the job (after validating the spec here)."""
    from xit_dist.plan.grid import is_grid_file, load_grid
    from xit_dist.config.load import load_spec

    job_overrides = [*overrides, "distributed.address=auto"]
    # Paths stay as written: the job's `run` resolves them where it starts, in its working
    # directory (the shipped repository). A grid is validated whole; its cells share output_dir
    # and tracking, so the first cell's stand for all.
    if is_grid_file(spec_path):
        spec = load_grid(spec_path, job_overrides, relative_to=None).cells[0].spec
    else:
        spec = load_spec(spec_path, job_overrides, relative_to=None)
    check_results_outlive_the_job(spec)
    if is_object_store_uri(spec.output_dir):  # with the credentials the job will get (PASSED_ENV)
        check_output_store(spec.output_dir)
    prelude, spec_arg, spec_env = _spec_argument(Path(spec_path))
    sets = " ".join(f"--set {shlex.quote(o)}" for o in job_overrides)
    entrypoint = f"{prelude}python -m xit_dist.cli run {spec_arg} {sets}"
    runtime_env = {"working_dir": str(REPO_ROOT), "excludes": list(EXCLUDES), "env_vars": {**_passed_env(), **spec_env}}
    return entrypoint, runtime_env


def check_results_outlive_the_job(spec) -> None:
    """A relative output_dir (or a relative sqlite store) would resolve inside the job's
    temporary working directory on the cluster, deleted after the job."""
    from xit_dist.config.paths import absolute_store

    if not is_uri(spec.output_dir) and not Path(spec.output_dir).expanduser().is_absolute():
        raise XitError(
            f"output_dir {spec.output_dir}: a relative path would put the results in the job's temporary "
            "working directory on the cluster; pass an absolute path on storage the nodes share "
            "(--set output_dir=/shared/xit_runs)"
        )
    uri = spec.tracking.uri
    if uri and absolute_store(uri, Path("/")) != uri:
        raise XitError(
            f"tracking.uri {uri}: a relative store would be written in the job's temporary working directory on the "
            "cluster; give an absolute path on shared storage, or an MLflow server (http://...)"
        )


def submit(spec_path: str, overrides: list[str], address: str | None, wait: bool) -> int:
    entrypoint, runtime_env = build_submission(spec_path, overrides)
    client = connect(address)
    address = resolve_address(address)
    names = sorted(name for name in runtime_env["env_vars"] if name != SPEC_ENV)
    try:
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, metadata={SPEC_METADATA_KEY: Path(spec_path).name})
    except Exception as err:
        raise XitError(f"submit: the cluster at {address} refused the job: {' '.join(str(err).split())[:300]}") from None
    print(f"submitted {job_id} to {address}")
    print(f"environment passed: {', '.join(names) if names else 'none'} (values not shown)")
    print(f"follow: xit-dist logs {job_id} --follow --address {address}")
    if not wait:
        return 0
    return follow(client, job_id)


def follow(client, job_id: str) -> int:
    """Stream the job's logs until it ends; 0 if it SUCCEEDED, 1 otherwise."""

    async def stream() -> None:
        async for chunk in client.tail_job_logs(job_id):
            print(chunk, end="", flush=True)

    try:
        asyncio.run(stream())
    except KeyboardInterrupt:
        print(f"\nstopped following; the job keeps running (xit-dist stop {job_id})", file=sys.stderr)
        return 130
    status = _wait_terminal(client, job_id)
    print(f"job {job_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def _wait_terminal(client, job_id: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = str(client.get_job_status(job_id).value)
        if status in ("SUCCEEDED", "FAILED", "STOPPED") or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def _job_call(function, job_id: str):
    try:
        return function(job_id)
    except RuntimeError as err:
        if "404" in str(err) or "does not exist" in str(err):
            raise XitError(f"job: no job {job_id!r} on this cluster (xit-dist jobs lists them)") from None
        raise


def list_jobs(address: str | None) -> int:
    client = connect(address)
    jobs = sorted(client.list_jobs(), key=lambda job: job.start_time or 0)
    if not jobs:
        print("no jobs")
        return 0
    print(f"{'job':<34} {'status':<10} {'started':<19}  entrypoint")
    for job in jobs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.start_time / 1000)) if job.start_time else "-"
        entry = job.entrypoint if len(job.entrypoint) <= 100 else job.entrypoint[:97] + "..."
        print(f"{job.submission_id or job.job_id:<34} {str(job.status.value):<10} {started:<19}  {entry}")
    return 0


def job_logs(job_id: str, address: str | None, follow_logs: bool) -> int:
    client = connect(address)
    if follow_logs:
        _job_call(client.get_job_status, job_id)
        return follow(client, job_id)
    print(_job_call(client.get_job_logs, job_id), end="")
    return 0


def stop_job(job_id: str, address: str | None) -> int:
    client = connect(address)
    stopped = _job_call(client.stop_job, job_id)
    status = str(_job_call(client.get_job_status, job_id).value)
    print(f"job {job_id}: {'stop requested' if stopped else 'already ended'} ({status})")
    return 0
