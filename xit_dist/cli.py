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
    run = commands.add_parser("run", help="run intermediate -> target -> zero-shot evaluation")
    _spec_arguments(run)
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
    stop = commands.add_parser("stop", help="stop a job")
    stop.add_argument("job", help="job id")
    _address_argument(stop)
    return parser


def _address_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", help="the cluster's dashboard (Jobs API) address; default: RAY_ADDRESS, else http://127.0.0.1:8265"
    )


def cmd_validate(args) -> int:
    from xit_dist.spec import dump_spec, load_spec

    print(dump_spec(load_spec(args.spec, args.overrides)), end="")
    return 0


def cmd_run(args) -> int:
    from xit_dist.spec import load_spec

    spec = load_spec(args.spec, args.overrides)
    from xit_dist.runner import run_experiment

    run_experiment(spec)
    return 0


def cmd_plan(args) -> int:
    from xit_dist.estimate import parse_memory
    from xit_dist.spec import load_spec

    gpu_memory = parse_memory(args.gpu_memory) if args.gpu_memory else None
    spec = load_spec(args.spec, args.overrides)
    from xit_dist.logs import quiet_third_party

    quiet_third_party()
    from xit_dist.plan_view import render_plan

    print(render_plan(spec, gpu_memory))
    return 0


def cmd_submit(args) -> int:
    from xit_dist.cluster import submit

    return submit(args.spec, args.overrides, args.address, args.wait)


def cmd_jobs(args) -> int:
    from xit_dist.cluster import list_jobs

    return list_jobs(args.address)


def cmd_logs(args) -> int:
    from xit_dist.cluster import job_logs

    return job_logs(args.job, args.address, args.follow)


def cmd_stop(args) -> int:
    from xit_dist.cluster import stop_job

    return stop_job(args.job, args.address)


COMMANDS = {
    "run": cmd_run, "validate": cmd_validate, "plan": cmd_plan,
    "submit": cmd_submit, "jobs": cmd_jobs, "logs": cmd_logs, "stop": cmd_stop,
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
        print("xit-dist: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as err:
        if "ray.train" not in sys.modules:  # validate never imports Ray
            raise
        from ray.train import TrainingFailedError

        if not isinstance(err, TrainingFailedError):
            raise
        print(f"{err}\nxit-dist: a training phase failed (above); rerun the same command to resume from its last checkpoint", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
