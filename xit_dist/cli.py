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
    return parser


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


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "plan": cmd_plan}


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
