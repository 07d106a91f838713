"""Helpers shared by the benchmark scripts (not part of the package): the machine description,
the benchmark's data set, a per-step clock every contender uses the same way, steady-state
throughput, and launching children under torchrun.

Every benchmark measures its contenders side by side in one invocation, and records the load
average while it ran: the machine is shared, so a number without its load is not a number.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python benchmarks/x.py` from anywhere, without installing
    sys.path.insert(0, str(REPO))

# Offline and quiet, for the benchmark process and every child it starts (see use_bench_environment).
BENCH_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONWARNINGS": "ignore",
    "TRANSFORMERS_VERBOSITY": "error",
}
# Built-in assets in the benchmarks' own cache: a test run that rebuilds the shared one (after a
# generator change) must not pull files from under a benchmark, nor the reverse.
BENCH_ENV["XIT_DIST_CACHE"] = str(Path("~/.cache/xit-dist-bench").expanduser())
# DeepSpeed JIT-compiles a shared-memory comm op into TORCH_EXTENSIONS_DIR behind a file lock.
# Processes building it with other flags (another venv) rebuild it in turn, and one killed
# mid-build leaves the lock behind, stalling every later start (seen here): our own directory.
BENCH_ENV["TORCH_EXTENSIONS_DIR"] = str(Path("~/.cache/xit-dist-bench/torch_extensions").expanduser())
if not shutil.which("nvidia-smi"):
    BENCH_ENV["DS_ACCELERATOR"] = "cpu"  # saves DeepSpeed's probing (and its warning) on CPU machines


def use_bench_environment() -> None:
    """Called first by every script's ``main`` (not on import: a test importing a script must not
    change its own process's environment); children inherit it."""
    from xit_dist.train.toolchain import interpreter_bin_first  # after REPO is on sys.path

    for key, value in BENCH_ENV.items():
        os.environ.setdefault(key, value)
    interpreter_bin_first()  # every contender builds DeepSpeed's ops with the same ninja

SMALL_MODEL = "builtin:xlmr-small"  # 4 layers x 256 hidden (xit_dist/builtin/models.py)


# ------------------------------------------------------------------ the machine and its load


def machine() -> str:
    """One line: CPU model, cores, memory, library versions."""
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        memory = f", {kib / 1024**2:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    versions = []
    for name in ("torch", "deepspeed", "ray", "transformers", "datasets"):
        try:
            module = __import__(name)
            versions.append(f"{name} {module.__version__}")
        except Exception:  # a library that is missing or fails to import is simply not listed
            continue
    return f"{cpu}, {os.cpu_count()} cores{memory}; Python {platform.python_version()}; " + ", ".join(versions)


class LoadMonitor:
    """The 1-minute load average sampled every few seconds while a benchmark runs."""

    def __init__(self, every_s: float = 5.0):
        import threading

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._every = every_s
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self._every)

    def __enter__(self) -> "LoadMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        if not self.samples:
            return "load average: not sampled"
        return (
            f"1-min load average during the run: min {min(self.samples):.2f}, median {statistics.median(self.samples):.2f}, "
            f"max {max(self.samples):.2f} ({len(self.samples)} samples, {os.cpu_count()} cores)"
        )


def header(title: str, command: str) -> None:
    print(f"# {title}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  `{command}`")
    print(f"# machine: {machine()}")
    print(f"# load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


def prebuild_deepspeed_ops() -> None:
    """Compile (or load) DeepSpeed's CPU comm op before anything is timed, so the first
    contender's start-up does not include a compilation the others skip."""
    subprocess.run(
        [sys.executable, "-c", "from deepspeed.comm.torch import build_shm_op; build_shm_op()"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900,
    )


# ------------------------------------------------------------------ the data


def demo_data_dir() -> Path:
    from xit_dist.builtin.assets import resolve_data_dir

    return resolve_data_dir("builtin:demo")


def small_model_dir() -> str:
    """The built-in 4 x 256 model. A build left without its weights (seen while the generator
    was being edited concurrently) is removed and rebuilt: this is the benchmarks' own cache."""
    from xit_dist.builtin.assets import resolve_model_dir

    directory = resolve_model_dir(SMALL_MODEL)
    if not (Path(directory) / "config.json").is_file():
        print(f"# {directory}: incomplete build (no config.json); rebuilding", flush=True)
        shutil.rmtree(directory, ignore_errors=True)
        directory = resolve_model_dir(SMALL_MODEL)
    return directory


def write_long_nli_data(root: Path, rows: int, seq_len: int) -> Path:
    """A copy of the demo benchmark whose MNLI training rows all fill ``seq_len`` tokens.

    Why: the demo's sentences are ~20 tokens, so a "sequence 128" benchmark on them would really
    run at ~40 and measure overheads, not compute. Each premise here joins consecutive demo
    premises until the pair is longer than ``seq_len`` (truncation then cuts it to exactly
    ``seq_len``); labels are the demo's, so the task is unchanged in kind. Every contender reads
    this same file, so they all see the same tokens.
    """
    from transformers import AutoTokenizer

    marker = root / "long_nli.json"
    identity = {"rows": rows, "seq_len": seq_len, "version": 1}
    if marker.is_file() and json.loads(marker.read_text()) == identity:
        return root
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(demo_data_dir(), root)
    tokenizer = AutoTokenizer.from_pretrained(small_model_dir())
    source = [json.loads(line) for line in (root / "nyu-mll/glue/mnli/train.jsonl").read_text().splitlines()]
    out = []
    cursor = 0
    for index in range(rows):
        base = source[index % len(source)]
        pieces = [base["premise"]]
        while len(tokenizer(" ".join(pieces), base["hypothesis"])["input_ids"]) <= seq_len:
            pieces.append(source[cursor % len(source)]["premise"])
            cursor += 1
        out.append({"premise": " ".join(pieces), "hypothesis": base["hypothesis"], "label": base["label"], "idx": index})
    (root / "nyu-mll/glue/mnli/train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in out))
    marker.write_text(json.dumps(identity))
    return root


def tokenized_nli(data_dir: Path, seq_len: int):
    """The long MNLI rows as fixed-length tensors (input_ids, attention_mask, labels): the
    baselines' data, tokenised once before any clock starts."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_model_dir())
    rows = [json.loads(line) for line in (data_dir / "nyu-mll/glue/mnli/train.jsonl").read_text().splitlines()]
    encoded = tokenizer(
        [r["premise"] for r in rows], [r["hypothesis"] for r in rows],
        truncation=True, max_length=seq_len, padding="max_length", return_tensors="pt",
    )
    if int(encoded["attention_mask"].sum(dim=1).min()) != seq_len:
        raise RuntimeError("long NLI data: some rows are shorter than the sequence length")
    return encoded["input_ids"], encoded["attention_mask"], torch.tensor([r["label"] for r in rows])


# ------------------------------------------------------------------ the per-step clock


@dataclass
class StepClock:
    """Wall-clock time (``time.time()``, comparable across processes) at the end of every
    optimizer step on rank 0, written to ``path`` as JSON. Every contender ticks it at the same
    point (after its optimizer step returns), so throughput is measured the same way for all."""

    path: str | None
    rank: int = 0
    started: float = field(default_factory=time.time)
    times: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def tick(self) -> None:
        if self.rank == 0:
            self.times.append(time.time())

    def save(self) -> None:
        if self.rank == 0 and self.path:
            Path(self.path).write_text(json.dumps({"started": self.started, "times": self.times, **self.extra}))


def patch_deepspeed_step(clock: StepClock) -> None:
    """Tick ``clock`` after each ``DeepSpeedEngine.step()`` at a gradient-accumulation boundary:
    observes a loop without changing its code (one ``time.time()`` per step)."""
    from deepspeed.runtime.engine import DeepSpeedEngine

    original = DeepSpeedEngine.step

    def step(self, *args, **kwargs):
        boundary = self.is_gradient_accumulation_boundary()
        result = original(self, *args, **kwargs)
        if boundary:
            clock.tick()
        return result

    DeepSpeedEngine.step = step


def steady_samples_per_s(times: list[float], warmup: int, global_batch: int) -> float:
    """Samples/s over the steps after the first ``warmup``: (steps x batch) / their wall time."""
    if len(times) < warmup + 2:
        raise ValueError(f"only {len(times)} steps recorded, need more than warm-up {warmup} + 1")
    steps = len(times) - 1 - warmup
    return steps * global_batch / (times[-1] - times[warmup])


# ------------------------------------------------------------------ children


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, script: Path, args: list[str]) -> list[str]:
    """A torchrun command line on a free port (other jobs on the machine may hold 29500)."""
    return [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(script), *args,
    ]


class TreeCpu:
    """CPU seconds (user + system) used by a process and all its descendants, sampled every
    ``every_s`` with wall-clock stamps. A process that exits keeps its last reading, so the sum
    never goes back. On a shared machine wall time includes waiting for a core; CPU time is
    the work a contender itself did (its Ray daemons, launcher and spin-waits included)."""

    def __init__(self, pid: int, every_s: float = 0.5):
        import threading

        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._every = every_s
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                for process in [root, *root.children(recursive=True)]:
                    try:
                        times = process.cpu_times()
                        self._last[process.pid] = times.user + times.system + times.children_user + times.children_system
                    except psutil.Error:
                        continue
            except psutil.Error:
                pass
            self.samples.append((time.time(), sum(self._last.values())))
            self._stop.wait(self._every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> float:
        """CPU seconds used between two wall-clock times (linear between samples)."""
        import numpy as np

        stamps, cpu = zip(*self.samples)
        return float(np.interp(end, stamps, cpu) - np.interp(start, stamps, cpu))


def run_child(command: list[str], log: Path, timeout: float, cpu: bool = False) -> tuple[float, TreeCpu | None]:
    """Run a child to completion (its output to ``log``); returns its launch time (time.time())
    and, with ``cpu``, the CPU time of its process tree over the run."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    launched = time.time()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        tree = TreeCpu(process.pid) if cpu else None
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            if tree is not None:
                tree.stop()
    if returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"child failed ({returncode}): {' '.join(command)}\n{tail}")
    return launched, tree


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(rows: list[list[str]], head: list[str]) -> str:
    """A Markdown table (pasted as is into BENCHMARKS.md)."""
    widths = [max(len(str(x)) for x in column) for column in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
