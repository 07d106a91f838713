"""Training-loop throughput: an xit-dist phase against the bare loops it is built from.

    python benchmarks/training_loop.py            # ZeRO 0-3, 2 interleaved repetitions (~20 min on 2 idle cores)
    python benchmarks/training_loop.py --quick    # ZeRO 0 and 3, 1 repetition, 15 steps (~6 min)

Contenders, all on 2 workers x 1 CPU thread, the same model (XLM-R config 4 layers x 256 hidden,
``builtin:xlmr-small``), the same data (demo MNLI rows lengthened so every sequence fills 128
tokens), global batch 16 (micro batch 8 x 2 workers), fp32, AdamW with linear warm-up:

- ``xit-dist``: a real phase: ``run_phase`` -> Ray Train ``TorchTrainer`` -> the worker loop in
  xit_dist/train/worker.py (datasets features, the format's collator, MLflow metrics every 10
  steps, a checkpoint reported to Ray at the end), in its own process that starts Ray;
- ``deepspeed``: ``deepspeed.initialize`` and a plain loop over pre-tokenised tensors under
  ``torchrun`` (no Ray), with the same filled DeepSpeed config;
- ``hf-trainer``: Hugging Face ``Trainer`` with the same DeepSpeed config file, under ``torchrun``;
- ``ddp``: plain PyTorch DDP (gloo) under ``torchrun``: no ZeRO at all.

Diagnostics, run only when named in ``--contenders`` (they take xit-dist's distance to the bare
loop apart): ``deepspeed-beside-ray`` (the bare loop with an idle local Ray beside it),
``deepspeed-in-thread`` (the bare loop in a second thread) and ``deepspeed-in-ray`` (the bare
loop as Ray Train's ``train_loop_per_worker``), e.g.
``--stages 1 --contenders xit-dist deepspeed deepspeed-in-thread deepspeed-in-ray --repeats 3``.

Throughput: the wall time of every optimizer step on rank 0 (each contender ticks one clock at
the same point: after its optimizer step returns); steady state = samples/s over the steps after
the first ``--warmup``. Also samples per CPU-second: the CPU time (user + system) of the
contender's whole process tree over the same steps (Ray's daemons, the launcher, spin-waits all
count), which a busy shared machine disturbs far less than wall time. Start-up: from launching the contender's process to the end of its first
step (for xit-dist also from the ``run_phase`` call, i.e. with Ray already up, as in a run of
several phases). Contenders run one at a time, interleaved, each repetition in a rotated order;
ratios are taken within a repetition (paired) and the median over repetitions is reported.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

SEQ_LEN = 128
MICRO_BATCH = 8
WORKERS = 2
GLOBAL_BATCH = MICRO_BATCH * WORKERS
LEARNING_RATE = 1e-4
WEIGHT_DECAY = 0.01
WARMUP_RATIO = 0.1
CONTENDERS = ("xit-dist", "deepspeed", "hf-trainer", "ddp")
# Diagnostics (not run unless named in --contenders): where xit-dist's distance to the bare loop
# comes from: Ray's daemons beside the loop, the loop in a second thread, the loop inside a Ray
# Train worker.
DIAGNOSTICS = ("deepspeed-beside-ray", "deepspeed-in-thread", "deepspeed-in-ray")
STAGED = ("xit-dist", "deepspeed", "hf-trainer", *DIAGNOSTICS)  # once per ZeRO stage; ddp once per repetition


# ------------------------------------------------------------------ contenders (children)


def build_model():
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(_common.small_model_dir(), num_labels=3)


def adamw_with_schedule(model, total_steps: int):
    """The worker's optimizer recipe: AdamW, no decay on biases and LayerNorm, linear warm-up and decay."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}], lr=LEARNING_RATE, eps=1e-8
    )
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(WARMUP_RATIO * total_steps), total_steps)


def tensor_loader(data_dir: Path, rank: int):
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    dataset = TensorDataset(*_common.tokenized_nli(data_dir, SEQ_LEN))
    sampler = DistributedSampler(dataset, num_replicas=WORKERS, rank=rank, shuffle=True, seed=0, drop_last=True)
    return DataLoader(dataset, batch_size=MICRO_BATCH, sampler=sampler, drop_last=True)


def deepspeed_loop(args, rank: int) -> None:
    """The bare DeepSpeed loop: ``deepspeed.initialize`` and forward/backward/step over
    pre-tokenised tensors (a process group already set up, by Ray Train, is used as is)."""
    import deepspeed
    import torch

    from xit_dist.config.ds_config import fill_auto, load_ds_config

    torch.set_num_threads(1)
    torch.manual_seed(0)
    deepspeed.init_distributed(dist_backend="gloo")
    loader = tensor_loader(Path(args.data), rank)
    model = build_model()
    config = fill_auto(
        load_ds_config(f"zero{args.stage}"), micro_batch_size=MICRO_BATCH, gradient_accumulation_steps=1,
        world_size=WORKERS, learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY, adam_epsilon=1e-8, max_grad_norm=1.0,
        bf16=False, hidden_size=model.config.hidden_size,
    )
    optimizer, scheduler = adamw_with_schedule(model, args.total_steps)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config)
    clock = _common.StepClock(args.clock, rank)
    engine.train()
    for step, (input_ids, attention_mask, labels) in enumerate(loader):
        if step >= args.total_steps:
            break
        loss = engine(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        engine.backward(loss)
        engine.step()
        clock.tick()
    clock.save()


def child_deepspeed(args) -> None:
    deepspeed_loop(args, int(os.environ["RANK"]))


def child_deepspeed_in_ray(args) -> None:
    """Diagnostic: the bare loop as Ray Train's ``train_loop_per_worker`` (a worker actor's
    training thread, Ray's daemons and Train's helper actors around it), none of xit-dist's code."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from xit_dist.run.ray_cluster import start_ray

    start_ray(None)

    def loop(_config) -> None:
        import ray.train

        deepspeed_loop(args, ray.train.get_context().get_world_rank())

    TorchTrainer(
        loop, torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=WORKERS, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="bench", storage_path=str(Path(args.out) / "ray")),
    ).fit()


def child_deepspeed_in_thread(args) -> None:
    """Diagnostic: the bare loop under ``torchrun`` in a second thread, the way a Ray Train worker
    runs the training function (its main thread serves Ray's calls)."""
    import threading

    worker = threading.Thread(target=deepspeed_loop, args=(args, int(os.environ["RANK"])))
    worker.start()
    worker.join()


def child_deepspeed_beside_ray(args) -> None:
    """Diagnostic: the bare loop under ``torchrun`` while an idle local Ray (started as xit-dist
    starts it) runs beside it: the cost of Ray's daemons alone."""
    from xit_dist.run.ray_cluster import start_ray

    start_ray(None)
    loop_args = child_arguments("deepspeed", args.stage, args.clock, args.data, args.total_steps, args.out)
    subprocess.run(_common.torchrun(WORKERS, Path(__file__).resolve(), loop_args), check=True)


def child_ddp(args) -> None:
    import torch
    from torch.nn.parallel import DistributedDataParallel

    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.distributed.init_process_group("gloo")
    loader = tensor_loader(Path(args.data), rank)
    model = build_model()
    optimizer, scheduler = adamw_with_schedule(model, args.total_steps)
    ddp = DistributedDataParallel(model)
    clock = _common.StepClock(args.clock, rank)
    ddp.train()
    for step, (input_ids, attention_mask, labels) in enumerate(loader):
        if step >= args.total_steps:
            break
        loss = ddp(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ddp.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        clock.tick()
    clock.save()
    torch.distributed.destroy_process_group()


class _RowsDataset:
    """Rows as dicts, the shape ``Trainer`` feeds its collator."""

    def __init__(self, input_ids, attention_mask, labels):
        self.columns = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def __len__(self) -> int:
        return len(self.columns["labels"])

    def __getitem__(self, index: int) -> dict:
        return {name: column[index] for name, column in self.columns.items()}


def child_hf_trainer(args) -> None:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator

    from xit_dist.config.ds_config import load_ds_config

    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    clock = _common.StepClock(args.clock, rank)
    config = load_ds_config(f"zero{args.stage}")
    zero = config.get("zero_optimization", {})
    if zero.get("allgather_bucket_size") == "auto":  # an "auto" of ours the Trainer does not know: xit-dist's value
        from transformers import AutoConfig

        zero["allgather_bucket_size"] = AutoConfig.from_pretrained(_common.small_model_dir()).hidden_size ** 2

    class Clock(TrainerCallback):
        def on_step_end(self, *_, **__):
            clock.tick()

    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="xit-bench-hf-"),
        per_device_train_batch_size=MICRO_BATCH,
        gradient_accumulation_steps=1,
        max_steps=args.total_steps,
        learning_rate=LEARNING_RATE,
        weight_decay=WEIGHT_DECAY,
        warmup_steps=WARMUP_RATIO,  # a float in [0, 1) is a ratio of the total steps
        adam_epsilon=1e-8,
        max_grad_norm=1.0,
        optim="adamw_torch",  # the same torch AdamW the other contenders use
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,  # on a CPU machine the DeepSpeed batch arithmetic fails without it (STACK_NOTES)
        ddp_backend="gloo",
        seed=0,
        dataloader_num_workers=0,
        deepspeed=config,  # the other "auto" values: the Trainer fills them
    )
    dataset = _RowsDataset(*_common.tokenized_nli(Path(args.data), SEQ_LEN))
    # ZeRO-3 builds the model partitioned (zero.Init) as it loads: the process group and
    # DeepSpeed's view of it must exist first (with use_cpu the Trainer sets up neither before).
    _ = training_args.device
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")
    trainer = Trainer(
        model=build_model(), args=training_args, train_dataset=dataset, data_collator=default_data_collator, callbacks=[Clock()]
    )
    trainer.train()
    clock.save()
    torch.distributed.barrier()
    # Everything is measured and saved: leave without the interpreter's teardown, where a gloo
    # thread of the Trainer's process group aborted the exit at ZeRO-3 ("terminate called
    # without an active exception"), even after destroy_process_group.
    sys.stdout.flush()
    os._exit(0)


def timed_phase_worker(clock_path: str, config: dict) -> None:
    """The real ``train_phase_worker`` with a clock on ``DeepSpeedEngine.step`` (rank 0 writes it)."""
    import ray.train

    from xit_dist.train.worker import train_phase_worker

    clock = _common.StepClock(clock_path, ray.train.get_context().get_world_rank())
    _common.patch_deepspeed_step(clock)
    train_phase_worker(config)
    clock.save()


def xit_spec_tree(args) -> dict:
    training = {
        "epochs": 1, "max_steps": args.total_steps, "learning_rate": LEARNING_RATE, "batch_size": GLOBAL_BATCH,
        "warmup_ratio": WARMUP_RATIO, "weight_decay": WEIGHT_DECAY, "max_seq_length": SEQ_LEN, "log_every_n_steps": 10,
    }
    return {
        "name": "bench",
        "output_dir": args.out,
        "model": {"name_or_path": _common.SMALL_MODEL},
        "data": {"local_dir": args.data},
        "intermediate": [{"task": "mnli", "training": training}],
        "target": {"task": "xnli", "training": training},
        "evaluation": {"languages": ["en"]},
        "distributed": {"num_workers": WORKERS, "cpus_per_worker": 1, "deepspeed_config": f"zero{args.stage}", "max_failures": 0},
        "tracking": {"uri": f"sqlite:///{args.out}/mlflow.db", "experiment": "bench"},
    }


def child_xit(args) -> None:
    """One xit-dist phase, the way ``run_experiment`` runs it: preflight, MLflow runs, Ray, ``run_phase``."""
    from xit_dist.console import quiet_third_party

    quiet_third_party()
    import xit_dist.train.worker as worker_module
    from xit_dist.config.layout import phase_dir
    from xit_dist.plan.phases import build_plan
    from xit_dist.plan.preflight import preflight
    from xit_dist.run.jobs import phase_job
    from xit_dist.run.ray_cluster import start_ray
    from xit_dist.config.load import validate_tree
    from xit_dist.tracking.store import Tracker
    from xit_dist.train.phase import PhaseResources, run_phase

    spec = validate_tree(xit_spec_tree(args))
    inputs = preflight(spec)
    phase = build_plan(spec)[0]  # the MNLI phase (an intermediate phase: no evaluation at its end)
    tracker = Tracker(spec.tracking.uri, spec.tracking.experiment, Path(args.out) / "mlartifacts")
    parent = tracker.parent_run(spec.name, spec.fingerprint())
    child = tracker.child_run(parent, "intermediate:mnli", phase.hash, {})
    ray_started = time.time()
    start_ray(None)
    phase_called = time.time()
    job = phase_job(spec, phase, inputs.model_dir, inputs, spec.tracking.uri, child)
    resources = PhaseResources(WORKERS, False, 1, 0, str(Path(args.out) / "ray"))
    # run_phase imports the worker function when called: hand it the clocked one.
    original = worker_module.train_phase_worker
    worker_module.train_phase_worker = functools.partial(timed_phase_worker, args.clock)
    try:
        outcome = run_phase(job, phase.saves, phase_dir(spec, phase), resources)
    finally:
        worker_module.train_phase_worker = original
    clock = json.loads(Path(args.clock).read_text())
    clock.update(ray_init_s=phase_called - ray_started, phase_called=phase_called, reused=outcome.reused)
    Path(args.clock).write_text(json.dumps(clock))


CHILDREN = {
    "xit-dist": child_xit, "deepspeed": child_deepspeed, "hf-trainer": child_hf_trainer, "ddp": child_ddp,
    "deepspeed-in-ray": child_deepspeed_in_ray, "deepspeed-beside-ray": child_deepspeed_beside_ray,
    "deepspeed-in-thread": child_deepspeed_in_thread,
}


# ------------------------------------------------------------------ the driver


def child_arguments(name: str, stage: int, clock, data, total_steps: int, out) -> list[str]:
    """The command-line arguments of one contender's child process."""
    return [
        "--child", name, "--stage", str(stage), "--clock", str(clock), "--data", str(data),
        "--total-steps", str(total_steps), "--out", str(out),
    ]


def run_contender(name: str, stage: int | None, args, data_dir: Path, work: Path, tag: str) -> dict:
    clock = work / f"{tag}.json"
    log = work / f"{tag}.log"
    child_args = child_arguments(name, stage or 0, clock, data_dir, args.warmup + args.steps, work / tag)
    script = Path(__file__).resolve()
    own_launcher = name in ("xit-dist", "deepspeed-beside-ray", "deepspeed-in-ray")  # start Ray or torchrun themselves
    command = [sys.executable, str(script), *child_args] if own_launcher else _common.torchrun(WORKERS, script, child_args)
    launched, tree = _common.run_child(command, log, timeout=args.timeout, cpu=True)
    record = json.loads(clock.read_text())
    times = record["times"]
    if len(times) != args.warmup + args.steps:
        raise RuntimeError(f"{tag}: {len(times)} steps recorded, expected {args.warmup + args.steps} (see {log})")
    cpu_seconds = tree.between(times[args.warmup], times[-1])
    result = {
        "samples_per_s": _common.steady_samples_per_s(times, args.warmup, GLOBAL_BATCH),
        "samples_per_cpu_s": (len(times) - 1 - args.warmup) * GLOBAL_BATCH / cpu_seconds,
        "startup_s": times[0] - launched,
    }
    if "phase_called" in record:
        result["phase_startup_s"] = times[0] - record["phase_called"]
        result["ray_init_s"] = record["ray_init_s"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", type=int, nargs="+", default=[0, 1, 2, 3], choices=[0, 1, 2, 3])
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions (default 2)")
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the steady state (default 5)")
    parser.add_argument("--steps", type=int, default=20, help="steps measured after warm-up (default 20)")
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS + DIAGNOSTICS)
    parser.add_argument("--quick", action="store_true", help="ZeRO 0 and 3, 1 repetition, 15 measured steps")
    parser.add_argument("--workdir", default=None, help="where children write (default: a temporary directory)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one contender may take")
    parser.add_argument("--json", default=None, help="also write every measurement here")
    # internal: one contender in a child process
    parser.add_argument("--child", choices=CONTENDERS + DIAGNOSTICS, help=argparse.SUPPRESS)
    parser.add_argument("--stage", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--clock", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--total-steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _common.use_bench_environment()
    if args.child:
        CHILDREN[args.child](args)
        return 0
    if args.quick:
        args.stages, args.repeats, args.steps = [0, 3], 1, 15

    _common.header("training loop: xit-dist phase vs bare DeepSpeed, HF Trainer + DeepSpeed, DDP", " ".join(["python", *sys.argv]))
    print(
        f"# model {_common.SMALL_MODEL} (4x256), seq {SEQ_LEN}, global batch {GLOBAL_BATCH} = {MICRO_BATCH} x {WORKERS} workers, "
        f"fp32; warm-up {args.warmup} steps, {args.steps} measured; {args.repeats} repetition(s)", flush=True,
    )
    work = Path(args.workdir or tempfile.mkdtemp(prefix="xit-bench-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    _common.prebuild_deepspeed_ops()
    data_dir = _common.write_long_nli_data(work / "data", rows=max(1024, GLOBAL_BATCH * (args.warmup + args.steps + 1)), seq_len=SEQ_LEN)

    plan = [(name, stage) for stage in args.stages for name in STAGED if name in args.contenders]
    if "ddp" in args.contenders:
        plan.append(("ddp", None))
    measurements: list[dict] = []
    failures: list[str] = []
    with _common.LoadMonitor() as load:
        for rep in range(args.repeats):
            shift = rep % len(plan)
            for name, stage in plan[shift:] + plan[:shift]:  # rotate: no contender always runs first
                tag = f"r{rep}-{name}-z{stage if stage is not None else 'na'}"
                before = os.getloadavg()[0]
                try:
                    result = run_contender(name, stage, args, data_dir, work, tag)
                except (RuntimeError, subprocess.TimeoutExpired) as err:  # recorded; the others still run
                    print(f"rep {rep} {name} ZeRO-{stage}: FAILED: {str(err).splitlines()[0]}", flush=True)
                    failures.append(f"{tag}: {str(err).splitlines()[0]}")
                    continue
                result.update(contender=name, stage=stage, rep=rep, load_before=before)
                measurements.append(result)
                if args.json:
                    Path(args.json).write_text(json.dumps(measurements, indent=2))
                extra = f", phase start-up {result['phase_startup_s']:.1f}s (ray.init {result['ray_init_s']:.1f}s)" if "phase_startup_s" in result else ""
                print(
                    f"rep {rep} {name:10s} ZeRO-{stage if stage is not None else '-'}: {result['samples_per_s']:6.2f} samples/s, "
                    f"{result['samples_per_cpu_s']:5.2f} samples/CPU-s, "
                    f"start-up {result['startup_s']:5.1f}s{extra}  (load {before:.2f})", flush=True,
                )
    print()
    print(report(measurements, args))
    print()
    print(load.summary())
    for failure in failures:
        print(f"failed: {failure}")
    return 1 if failures else 0


def report(measurements: list[dict], args) -> str:
    def value(name, stage, rep, key="samples_per_s"):
        for m in measurements:
            if m["contender"] == name and m["stage"] == stage and m["rep"] == rep:
                return m.get(key)
        return None

    def med(values):
        values = [v for v in values if v is not None]
        return _common.median(values) if values else None

    def fmt(x, spec=".2f"):
        return "-" if x is None else format(x, spec)

    reps = range(args.repeats)

    columns = [name for name in STAGED if name in args.contenders] + (["ddp"] if "ddp" in args.contenders else [])
    others = [name for name in columns if name != "xit-dist"]

    def throughput(key: str) -> str:
        rows = []
        for stage in args.stages:
            per_rep = {name: {r: value(name, None if name == "ddp" else stage, r, key) for r in reps} for name in columns}
            cells = [f"ZeRO-{stage}"] + [fmt(med(list(per_rep[name].values()))) for name in columns]
            ours = per_rep.get("xit-dist", {})
            best_ours = max([v for v in ours.values() if v], default=None)
            for other in others if ours else []:
                paired = [ours[r] / per_rep[other][r] for r in reps if ours[r] and per_rep[other][r]]
                spread = f" ({min(paired):.2f}-{max(paired):.2f})" if len(paired) > 1 else ""
                best_other = max([v for v in per_rep[other].values() if v], default=None)
                best = f"; best {best_ours / best_other:.2f}x" if len(paired) > 1 and best_ours and best_other else ""
                cells.append(f"{med(paired):.2f}x{spread}{best}" if paired else "-")
            rows.append(cells)
        head = ["stage", *columns, *([f"xit/{other}" for other in others] if "xit-dist" in columns else [])]
        return _common.table(rows, head)

    start_rows = []
    for name in CONTENDERS + DIAGNOSTICS:
        for stage in ([None] if name == "ddp" else args.stages):
            startup = med([value(name, stage, r, "startup_s") for r in reps])
            if startup is None:
                continue
            phase = med([value(name, stage, r, "phase_startup_s") for r in reps])
            start_rows.append([name, "-" if stage is None else f"ZeRO-{stage}", fmt(startup, ".1f"), fmt(phase, ".1f")])
    startup = _common.table(start_rows, ["contender", "stage", "launch -> first step (s)", "run_phase -> first step (s)"])
    return (
        "Ratios: median of the ratios paired within a repetition (min-max); best: the best xit-dist repetition over the\n"
        "other's best (the least disturbed of each on a shared machine). Values: medians over repetitions.\n\n"
        "steady-state samples/s (wall clock):\n" + throughput("samples_per_s")
        + "\n\nsteady-state samples per CPU-second (user + system time of the contender's whole process tree):\n"
        + throughput("samples_per_cpu_s")
        + "\n\nstart-up (median):\n" + startup
    )


if __name__ == "__main__":
    raise SystemExit(main())
