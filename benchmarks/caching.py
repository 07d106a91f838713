"""Caching: a second run of the same spec retrains nothing, and tokenisation comes from the
`datasets` cache.

    python benchmarks/caching.py           # the demo spec, 20 steps a phase; cold then warm (~5 min on 2 cores)
    python benchmarks/caching.py --quick   # 10 steps a phase, 2 evaluation languages

Two measurements, each cold (fresh ``HF_DATASETS_CACHE`` and output directory) then warm (the
same ones again), each in a new process, as a user's second invocation is:

1. featurisation: every split the demo spec reads (MNLI train, XNLI test per language) through
   the package's ``training_features`` / ``evaluation_inputs``: seconds, and whether the rows
   came from cache files;
2. the whole run: ``run_experiment`` on ray_configs/demo.yaml (shortened with overrides): wall
   time from reading the spec to the results table, phases trained vs reused, and whether the
   evaluation was recomputed.

The built-in model and demo data are generated once beforehand (not part of either column).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

DEMO_SPEC = _common.REPO / "ray_configs" / "demo.yaml"


def overrides(output_dir: Path, steps: int, languages: list[str] | None) -> list[str]:
    sets = [
        f"output_dir={output_dir}",
        f"tracking.uri=sqlite:///{output_dir}/mlflow.db",
        f"intermediate.0.training.max_steps={steps}",
        f"target.training.max_steps={steps}",
    ]
    if languages:
        sets.append(f"evaluation.languages=[{', '.join(languages)}]")
    return sets


def child_featurize(args) -> None:
    """Featurise every split the spec reads; seconds per split and whether it hit the cache."""
    from transformers import AutoTokenizer

    from xit_dist.data.features import evaluation_inputs, training_features
    from xit_dist.console import quiet_third_party
    from xit_dist.plan.phases import build_plan
    from xit_dist.plan.preflight import preflight
    from xit_dist.run.jobs import eval_job, phase_job
    from xit_dist.config.load import load_spec
    from xit_dist.tasks.registry import get_task

    quiet_third_party()
    spec = load_spec(DEMO_SPEC, args.set)
    start = time.perf_counter()
    inputs = preflight(spec)  # as a run does first: reads every split (raw files -> Arrow, cached)
    timings = [{"split": "preflight: read every split the spec needs", "seconds": time.perf_counter() - start, "rows": None, "cached": None}]
    tokenizer = AutoTokenizer.from_pretrained(inputs.model_dir)
    phases = build_plan(spec)
    seen: set[tuple[str, ...]] = set()
    for phase in phases:
        job = phase_job(spec, phase, inputs.model_dir, inputs, "", "")
        task = get_task(job.task)
        start = time.perf_counter()
        features = training_features(task, tokenizer, job.options, job.data_dir, job.data_revision)
        sources = tuple(source.describe() for source in task.train_sources)
        same = " (same rows as above: already cached)" if sources in seen else ""
        seen.add(sources)
        timings.append({"split": f"tokenise {task.name} train ({phase.kind}){same}", "seconds": time.perf_counter() - start,
                        "rows": len(features), "cached": _from_cache(features)})
    job = eval_job(spec, phases[-1], inputs)
    task = get_task(job.task)
    for lang in job.languages:
        start = time.perf_counter()
        _, features = evaluation_inputs(task, task.eval_source(job.split, lang), tokenizer, job.options, job.data_dir, job.data_revision)
        timings.append({"split": f"tokenise {task.name} {job.split} {lang}", "seconds": time.perf_counter() - start,
                        "rows": len(features), "cached": _from_cache(features)})
    Path(args.result).write_text(json.dumps(timings))


def _from_cache(features) -> bool:
    """Backed by cache files the process did not have to write (datasets keeps them on disk)."""
    return bool(features.cache_files)


def child_run(args) -> None:
    started = time.perf_counter()
    from xit_dist.run.scheduler import run_experiment
    from xit_dist.config.load import load_spec

    log = open(Path(args.result).with_suffix(".log"), "a")
    summary = run_experiment(load_spec(DEMO_SPEC, args.set), out=lambda line: print(line, file=log, flush=True))
    Path(args.result).write_text(json.dumps({
        "seconds": time.perf_counter() - started,
        "trained": [o.record.get("phase_id") for o in summary.phases if not o.reused],
        "reused": [o.record.get("phase_id") for o in summary.phases if o.reused],
        "results": summary.results.mlflow_metrics(),
    }))


def run_child_mode(mode: str, sets: list[str], result: Path, datasets_cache: Path, timeout: float) -> float:
    env_cache = os.environ.get("HF_DATASETS_CACHE")
    os.environ["HF_DATASETS_CACHE"] = str(datasets_cache)
    try:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--result", str(result)]
        for assignment in sets:
            command += ["--set", assignment]
        launched = time.time()
        _common.run_child(command, result.with_suffix(".stdout"), timeout)
        return time.time() - launched
    finally:
        if env_cache is None:
            os.environ.pop("HF_DATASETS_CACHE", None)
        else:
            os.environ["HF_DATASETS_CACHE"] = env_cache


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per phase (default 20)")
    parser.add_argument("--quick", action="store_true", help="10 steps, 2 evaluation languages")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--child", choices=["featurize", "run"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _common.use_bench_environment()
    if args.child:
        {"featurize": child_featurize, "run": child_run}[args.child](args)
        return 0
    languages = ["en", "de"] if args.quick else None
    if args.quick:
        args.steps = 10

    _common.header("caching: a second run of the same spec", " ".join(["python", *sys.argv]))
    print(f"# spec {DEMO_SPEC.relative_to(_common.REPO)} with {args.steps} steps a phase" + (", languages en de" if languages else ""))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="xit-bench-cache-"))
    work.mkdir(parents=True, exist_ok=True)
    from xit_dist.builtin.assets import resolve_data_dir, resolve_model_dir

    resolve_model_dir("builtin:xlmr-tiny"), resolve_data_dir("builtin:demo")  # generated assets: not measured

    with _common.LoadMonitor() as load:
        features = {}
        for attempt in ("cold", "warm"):
            result = work / f"featurize-{attempt}.json"
            run_child_mode("featurize", overrides(work / "featurize-out", args.steps, languages), result, work / "datasets-featurize", args.timeout)
            features[attempt] = json.loads(result.read_text())
        runs = {}
        for attempt in ("cold", "warm"):
            result = work / f"run-{attempt}.json"
            process = run_child_mode("run", overrides(work / "run-out", args.steps, languages), result, work / "datasets-run", args.timeout)
            # the runner announces a stand-alone evaluation worker group on stdout ("== evaluation ...")
            separate_eval = "== evaluation" in result.with_suffix(".stdout").read_text(errors="replace")
            runs[attempt] = {**json.loads(result.read_text()), "process_seconds": process, "separate_eval": separate_eval}

    rows = []
    for cold, warm in zip(features["cold"], features["warm"]):
        rows.append([
            cold["split"], "" if cold["rows"] is None else f"{cold['rows']:,}", f"{cold['seconds']:.2f}", f"{warm['seconds']:.2f}",
            f"{cold['seconds'] / max(warm['seconds'], 1e-9):.1f}x", "" if warm["cached"] is None else "yes" if warm["cached"] else "no",
        ])
    total_cold = sum(t["seconds"] for t in features["cold"])
    total_warm = sum(t["seconds"] for t in features["warm"])
    rows.append(["all splits", "", f"{total_cold:.2f}", f"{total_warm:.2f}", f"{total_cold / max(total_warm, 1e-9):.1f}x", ""])
    print("\nreading and tokenising, a fresh datasets cache vs the same cache in a new process:")
    print(_common.table(rows, ["split", "rows", "cold s", "warm s", "cold / warm", "warm from cache files"]))

    cold, warm = runs["cold"], runs["warm"]
    same = cold["results"] == warm["results"]
    run_rows = [
        ["wall time, reading the spec -> results (s)", f"{cold['seconds']:.1f}", f"{warm['seconds']:.1f}"],
        ["process, launch -> exit (s)", f"{cold['process_seconds']:.1f}", f"{warm['process_seconds']:.1f}"],
        ["phases trained", str(len(cold["trained"])), str(len(warm["trained"]))],
        ["phases reused", str(len(cold["reused"])), str(len(warm["reused"]))],
        ["evaluation", *("a separate evaluation worker group" if r["separate_eval"] else
                         "live on the target phase's workers" if r["trained"] else "its cached results" for r in (cold, warm))],
    ]
    print("\nthe whole run (run_experiment), first vs second invocation of the same spec:")
    print(_common.table(run_rows, ["", "cold", "warm"]))
    print(f"\nsame results both times: {'yes' if same else 'NO'} ({len(cold['results'])} metrics)")
    print(load.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
