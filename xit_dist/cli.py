"""``xit-dist``: the command line. User mistakes print one line and exit 2 before any
cluster resources are used."""

from __future__ import annotations

import argparse
import os
import sys

from xit_dist.errors import XitError


def _spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="experiment spec (YAML)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a spec field by dotted path, e.g. --set distributed.num_workers=16 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xit-dist", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run intermediate -> target -> zero-shot evaluation (a spec, or a grid of them)")
    _spec_arguments(run)
    run.add_argument(
        "--max-concurrent-phases", type=int, metavar="N",
        help="grids: worker groups (phases, evaluations) at once; default: as many as the cluster's CPUs/GPUs hold",
    )
    validate = commands.add_parser("validate", help="print the resolved spec, or one-line errors; starts nothing")
    _spec_arguments(validate)
    plan = commands.add_parser("plan", help="phases, what is done, and per-GPU memory estimates; starts nothing")
    _spec_arguments(plan)
    plan.add_argument("--gpu-memory", metavar="SIZE", help="warn when a phase needs more per GPU, e.g. 80GiB")
    submit = commands.add_parser("submit", help="submit a run to a Ray cluster as a job (Ray's Jobs API)")
    _spec_arguments(submit)
    _address_argument(submit)
    submit.add_argument("--wait", action="store_true", help="stream the job's logs; exit 0 if it succeeded, 1 otherwise")
    jobs = commands.add_parser("jobs", help="list the cluster's jobs")
    _address_argument(jobs)
    logs = commands.add_parser("logs", help="print a job's logs")
    logs.add_argument("job", help="job id (xit-dist jobs lists them)")
    logs.add_argument("--follow", action="store_true", help="stream until the job ends; exit 0 if it succeeded, 1 otherwise")
    _address_argument(logs)
    data = commands.add_parser("data", help="load a task's data as a run would: rows, labels, token lengths, dropped rows")
    data.add_argument("task", help="registered task name (xit-dist data --help lists them)")
    data.add_argument("--split", default="train", help="train (default), validation or test")
    data.add_argument("--lang", dest="languages", action="append", metavar="L", help="language (repeatable); default: all of the task's")
    data.add_argument("--data-files", nargs="+", metavar="PATH", help="a directory in the hub layout (or the task's release files), or one file for the one split asked for; default: the hub; builtin:demo for the bundled data")
    data.add_argument("--model", default="builtin:xlmr-tiny", help="whose tokenizer measures lengths (e.g. FacebookAI/xlm-roberta-large)")
    data.add_argument("--max-seq-length", type=int, default=256)
    languages = commands.add_parser("languages", help="language metadata: family, script, XLM-R data size group")
    languages.add_argument("--benchmark", choices=["xtreme", "xtreme-r"], help="only this benchmark's languages")
    stop = commands.add_parser("stop", help="stop a job")
    stop.add_argument("job", help="job id")
    _address_argument(stop)
    tune = commands.add_parser("tune", help="hyperparameter search for an intermediate task (Ray Tune + Optuna + ASHA)")
    tune.add_argument("spec", help="search spec (YAML), e.g. ray_configs/tune/mnli.yaml")
    tune.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a search spec field")
    tune.add_argument("--resume", action="store_true", help="carry on an interrupted search (same spec)")
    tune.add_argument("--status", action="store_true", help="where the search stands (trials, best, time, why it stopped); starts nothing")
    report = commands.add_parser("report", help="paper-style tables and plots of a grid from MLflow (Markdown, CSV, PNG)")
    report.add_argument("experiment", help="MLflow experiment name, or a grid file (its store and experiment)")
    report.add_argument("--tracking-uri", help="MLflow store; default: the grid file's, else MLFLOW_TRACKING_URI, else xit_runs/mlflow.db")
    report.add_argument("--grid", help="only this grid (xit.grid tag); default: every grid in the experiment")
    report.add_argument("--out", help="directory for the report files; default: reports/<experiment> under the current directory")
    ui = commands.add_parser("ui", help="the MLflow UI on the project's tracking store, on 127.0.0.1")
    ui.add_argument("spec", nargs="?", help="an experiment or search spec whose store to show; default xit_runs/mlflow.db")
    ui.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a spec field")
    ui.add_argument("--store", help="a tracking URI or an sqlite file instead")
    ui.add_argument("--port", type=int, default=5000)
    return parser


def _address_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", help="the cluster's dashboard (Jobs API) address; default: RAY_ADDRESS, else http://127.0.0.1:8265"
    )


def cmd_validate(args) -> int:
    from xit_dist.plan.grid import is_grid_file, load_grid
    from xit_dist.config.load import dump_spec, load_spec

    if is_grid_file(args.spec):
        grid = load_grid(args.spec, args.overrides)
        print(f"grid {grid.name}: {len(grid.cells)} valid cells ({grid.shape()})")
        print("\n".join(f"  {cell.name}" for cell in grid.cells))
        return 0
    print(dump_spec(load_spec(args.spec, args.overrides)), end="")
    return 0


def cmd_run(args) -> int:
    from xit_dist.plan.grid import is_grid_file, load_grid
    from xit_dist.config.load import load_spec

    if is_grid_file(args.spec):
        grid = load_grid(args.spec, args.overrides)
        from xit_dist.run.scheduler import run_grid

        run_grid(grid, args.max_concurrent_phases)
        return 0
    if args.max_concurrent_phases is not None:
        raise XitError("--max-concurrent-phases: only for a grid (a single spec runs its phases in order)")
    spec = load_spec(args.spec, args.overrides)
    from xit_dist.run.scheduler import run_experiment

    run_experiment(spec)
    return 0


def cmd_plan(args) -> int:
    from xit_dist.plan.estimate import parse_memory
    from xit_dist.config.load import load_spec

    gpu_memory = parse_memory(args.gpu_memory) if args.gpu_memory else None
    from xit_dist.plan.grid import is_grid_file, load_grid

    grid = load_grid(args.spec, args.overrides) if is_grid_file(args.spec) else None
    spec = None if grid else load_spec(args.spec, args.overrides)
    from xit_dist.console import quiet_third_party

    quiet_third_party()
    from xit_dist.plan.view import render_grid_plan, render_plan

    print(render_grid_plan(grid, gpu_memory) if grid else render_plan(spec, gpu_memory))
    return 0


def cmd_submit(args) -> int:
    from xit_dist.run.submit import submit

    return submit(args.spec, args.overrides, args.address, args.wait)


def cmd_jobs(args) -> int:
    from xit_dist.run.submit import list_jobs

    return list_jobs(args.address)


def cmd_logs(args) -> int:
    from xit_dist.run.submit import job_logs

    return job_logs(args.job, args.address, args.follow)


def cmd_stop(args) -> int:
    from xit_dist.run.submit import stop_job

    return stop_job(args.job, args.address)


def cmd_tune(args) -> int:
    from xit_dist.tune.search_spec import load_search_spec

    search = load_search_spec(args.spec, args.overrides)
    if args.status:
        if args.resume:
            raise XitError("--status starts nothing: give it without --resume")
        from xit_dist.tune.status import search_status

        print(search_status(search))
        return 0
    from xit_dist.tune.search import run_search

    command = " ".join(["xit-dist tune", args.spec, *(f"--set {o}" for o in args.overrides)])
    summary = run_search(search, args.resume, command)
    return 0 if summary.finished else 130


def cmd_ui(args) -> int:
    from xit_dist.report.ui import serve, store_for

    uri, artifacts = store_for(args.spec, args.overrides, args.store)
    return serve(uri, args.port, artifacts)


def cmd_data(args) -> int:
    from xit_dist.data.inspect import inspect_task
    from xit_dist.console import quiet_third_party

    quiet_third_party()
    print(inspect_task(args.task, args.split, args.languages, args.data_files, args.model, args.max_seq_length))
    return 0


def cmd_languages(args) -> int:
    from xit_dist.data.inspect import languages_table

    print(languages_table(args.benchmark))
    return 0


def cmd_report(args) -> int:
    from xit_dist.console import quiet_third_party
    from xit_dist.report.tables import write_report

    quiet_third_party()
    write_report(args.experiment, args.tracking_uri, args.grid, args.out)
    return 0


COMMANDS = {
    "run": cmd_run, "validate": cmd_validate, "plan": cmd_plan,
    "submit": cmd_submit, "jobs": cmd_jobs, "logs": cmd_logs, "stop": cmd_stop,
    "data": cmd_data, "languages": cmd_languages,
    "tune": cmd_tune, "ui": cmd_ui, "report": cmd_report,
}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except XitError as err:
        print(f"xit-dist: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"xit-dist: interrupted; rerun {resume_command(args, argv)} to resume from the last checkpoints", file=sys.stderr)
        return 130
    except Exception as err:
        if "ray.train" not in sys.modules:  # validate never imports Ray
            raise
        from ray.train import TrainingFailedError

        if not isinstance(err, TrainingFailedError):
            raise
        print(f"{err}\nxit-dist: a training phase failed (above); rerun the same command to resume from its last checkpoint", file=sys.stderr)
        return 1


def resume_command(args, argv: list[str] | None) -> str:
    """The command as typed (a search resumes with --resume)."""
    import shlex

    words = list(sys.argv[1:] if argv is None else argv)
    if args.command == "tune" and "--resume" not in words:
        words.append("--resume")
    return f"`{shlex.join(['xit-dist', *words])}`"


if __name__ == "__main__":
    sys.exit(main())
