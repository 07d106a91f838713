"""ZeRO memory per rank, read from the DeepSpeed engines, against the ideal share.

    python benchmarks/zero_memory.py              # fp32 ZeRO 0-3 and bf16 ZeRO 2-3, 2 and 4 workers (~4 min on 2 cores)
    python benchmarks/zero_memory.py --quick      # fp32, 2 workers only
    python benchmarks/zero_memory.py --explain    # also list every storage counted, per rank

For each precision and worker count N (one ``torchrun`` each) and each ZeRO stage, every rank builds the
engine the way an xit-dist worker does (``fill_auto`` on ds_configs/zeroS.json, the model built
partitioned under ZeRO-3 through ``HfDeepSpeedConfig``, the worker's ``build_optimizer``), runs
two optimizer steps, and counts the bytes it holds, deduplicated by storage:

- parameters: the module's parameters (ZeRO-1/2: the flat buffer they live in; ZeRO-3: each
  parameter's partition ``ds_tensor`` plus the small parameters DeepSpeed keeps whole);
- gradients, when the second backward has returned (held until the step): every ``.grad`` and
  every gradient buffer the ZeRO optimizer holds (attributes named ``*grad*``), reduce buckets
  excluded; and, listed apart, their transient peak just before DeepSpeed's end-of-backward
  reduction, where gradients still waiting to be reduced exist whole;
- optimizer states: the AdamW ``exp_avg``/``exp_avg_sq`` tensors;
- master weights: the fp32 partitions the ZeRO optimizer steps on (a copy it keeps even in
  fp32 training);
- reduce buckets and anything else the optimizer holds are listed, not compared.

Ideal share per rank, in parameters' worth of 4 bytes (P parameters): parameters P (stage 3: P/N),
gradients P (stages 2-3: P/N), optimizer states 2P (stages 1-3: 2P/N), master weights 0 (stages
1-3: P/N). bf16 (bf16 weights, gradients accumulated in fp32 through DeepSpeed's ``data_types``,
which ``fill_auto`` sets for bf16 at stages 1-3; DeepSpeed on CPU has no bf16 ZeRO-1): the same
with 2-byte parameters.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

CATEGORIES = ("parameters", "gradients", "optimizer states", "master weights")
LISTED = ("gradient peak", "reduce buckets", "other")
TRAINING = {"learning_rate": 1e-4, "weight_decay": 0.01, "adam_epsilon": 1e-8, "warmup_ratio": 0.1, "max_grad_norm": 1.0}


# ------------------------------------------------------------------ counting (on every rank)


class StorageCounter:
    """Bytes per category, each storage counted once (the first category that claims it wins);
    ``where`` keeps which attribute each counted storage was found under (``--explain``)."""

    def __init__(self):
        self.seen: set[int] = set()
        self.bytes = {name: 0 for name in (*CATEGORIES, *LISTED)}
        self.where: list[tuple[str, str, int]] = []

    def add(self, category: str, tensor, path: str = "") -> None:
        import torch

        if not isinstance(tensor, torch.Tensor) or tensor.numel() == 0 or tensor.device.type == "meta":
            return
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in self.seen:
            return
        self.seen.add(key)
        self.bytes[category] += storage.nbytes()
        self.where.append((category, path, storage.nbytes()))


def deepspeed_tensors(root, prefix: str = "", depth: int = 0, visited: set[int] | None = None):
    """(attribute path, tensor) for every tensor reachable from a DeepSpeed object through its
    attributes, lists, tuples and dicts (not through torch modules: the model is counted apart)."""
    import torch

    visited = set() if visited is None else visited
    if id(root) in visited or depth > 6:
        return
    visited.add(id(root))
    if isinstance(root, torch.Tensor):
        yield prefix, root
        if root.grad is not None:
            yield prefix + ".grad", root.grad
        return
    if isinstance(root, dict):
        items = [(f"{prefix}[{k!r}]", v) for k, v in root.items()]
    elif isinstance(root, (list, tuple, set)):
        items = [(f"{prefix}[{i}]", v) for i, v in enumerate(root)]
    elif type(root).__module__.startswith("deepspeed") and hasattr(root, "__dict__"):
        items = [(f"{prefix}.{k}", v) for k, v in vars(root).items()]
    else:
        return
    for path, value in items:
        yield from deepspeed_tensors(value, path, depth + 1, visited)


def count_gradients(engine) -> StorageCounter:
    counter = StorageCounter()
    for param in engine.module.parameters():
        counter.add("parameters", param.data)
        counter.add("parameters", getattr(param, "ds_tensor", None))
    for name, param in engine.module.named_parameters():
        counter.add("gradients", param.grad, f"{name}.grad")
    for path, tensor in deepspeed_tensors(engine.optimizer):
        if category_of(path) in ("reduce buckets", "gradients"):
            counter.add(category_of(path), tensor, path)
    return counter


def count_model_states(engine) -> StorageCounter:
    counter = StorageCounter()
    for name, param in engine.module.named_parameters():
        counter.add("parameters", param.data, name)  # ZeRO-3 leaves an empty tensor here unless the parameter persists
        counter.add("parameters", getattr(param, "ds_tensor", None), f"{name}.ds_tensor")
    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)
    for g, group in enumerate(inner.param_groups):
        for i, tensor in enumerate(group["params"]):
            counter.add("master weights", tensor, f"optimizer.param_groups[{g}][{i}]")
    for state in inner.state.values():
        for key, tensor in state.items():
            if key != "step":
                counter.add("optimizer states", tensor, f"optimizer.state[{key}]")
    for path, tensor in deepspeed_tensors(engine.optimizer):
        counter.add(category_of(path), tensor, path)
    return counter


def category_of(path: str) -> str:
    """What a tensor the ZeRO optimizer holds is, from its attribute path (DeepSpeed 0.19's names:
    ``ipg_buckets``, ``averaged_gradients``, ``grad_partitions_flat_buffer``,
    ``single_partition_of_fp32_groups`` / ``fp32_partitioned_groups_flat`` for the master weights;
    ZeRO-3 hands the latter to AdamW's param_groups only for the duration of a step)."""
    name = path.lower()
    if "ipg" in name or "bucket" in name:
        return "reduce buckets"
    if "grad" in name:
        return "gradients"
    if "fp32" in name:
        return "master weights"
    return "other"


def measure_stage(stage: int, rank: int, world_size: int, bf16: bool = False) -> dict:
    import deepspeed
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from xit_dist.config.ds_config import fill_auto, load_ds_config
    from xit_dist.config.spec import TrainingConfig
    from xit_dist.train.engine import build_optimizer

    model_dir = _common.small_model_dir()
    hidden = AutoConfig.from_pretrained(model_dir).hidden_size
    config = fill_auto(
        load_ds_config(f"zero{stage}"), micro_batch_size=2, gradient_accumulation_steps=1,
        world_size=world_size, learning_rate=TRAINING["learning_rate"], weight_decay=TRAINING["weight_decay"],
        adam_epsilon=TRAINING["adam_epsilon"], max_grad_norm=TRAINING["max_grad_norm"], bf16=bf16, hidden_size=hidden,
    )
    assert not bf16 or config["data_types"]["grad_accum_dtype"] == "fp32"  # fill_auto's bf16 setting
    keep_alive = None
    if stage == 3:  # as the worker does: built already partitioned
        from transformers.integrations import HfDeepSpeedConfig

        keep_alive = HfDeepSpeedConfig(config)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3)
    total_params = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    optimizer, scheduler = build_optimizer(model, TrainingConfig(**TRAINING), total_steps=10)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config)
    # Gradients are counted when backward has returned (what a rank holds until its step) and
    # also just before DeepSpeed's end-of-backward reduction, where the gradients still waiting
    # to be reduced exist whole (stages 0-1: all of them): the transient peak.
    before_reduction: list[StorageCounter] = []
    reduce = engine.allreduce_gradients

    def counted_reduce(*args, **kwargs):
        before_reduction.append(count_gradients(engine))  # noqa: F821 (the engine is deleted after the loop, not before)
        return reduce(*args, **kwargs)

    engine.allreduce_gradients = counted_reduce
    generator = torch.Generator().manual_seed(rank)
    for _ in range(2):  # the first step creates AdamW's states; measure the second
        before_reduction.clear()
        batch = {
            "input_ids": torch.randint(5, model.config.vocab_size, (2, 32), generator=generator),
            "labels": torch.randint(0, 3, (2,), generator=generator),
        }
        loss = engine(**batch).loss
        engine.backward(loss)
        after_backward = count_gradients(engine)
        engine.step()
    peak = max([after_backward, *before_reduction], key=lambda c: c.bytes["gradients"])
    states = count_model_states(engine)
    measured = {**states.bytes, "gradients": after_backward.bytes["gradients"], "gradient peak": peak.bytes["gradients"]}
    where = (
        [w for w in after_backward.where if w[0] == "gradients"]
        + [("gradient peak", path, n) for category, path, n in peak.where if category == "gradients"]
        + [w for w in states.where if w[0] != "gradients"]
    )
    persistent = sum(p.numel() for p in engine.module.parameters() if getattr(p, "ds_persist", False))
    del engine, optimizer, scheduler, model, keep_alive
    gc.collect()
    return {"rank": rank, "bytes": measured, "total_params": total_params, "persistent_params": persistent, "where": where}


def child(args) -> None:
    import deepspeed
    import torch

    torch.set_num_threads(1)
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    results = []
    for stage in args.stages:
        mine = measure_stage(stage, rank, world_size, args.bf16)
        gathered = [None] * world_size
        torch.distributed.all_gather_object(gathered, mine)
        results.append({"stage": stage, "world_size": world_size, "bf16": args.bf16, "ranks": gathered})
    if rank == 0:
        Path(args.result).write_text(json.dumps(results))


# ------------------------------------------------------------------ the driver


def ideal_bytes(category: str, stage: int, params: int, n: int, bf16: bool = False) -> float:
    """fp32: 4 bytes per parameter for weights, gradients and master copy, 8 for AdamW's two
    states; bf16: 2-byte weights, fp32 gradients (grad_accum_dtype), fp32 master and states."""
    weights, grads, master, states = (2 if bf16 else 4) * params, 4 * params, 4 * params, 8 * params
    return {
        "parameters": weights / n if stage >= 3 else weights,
        "gradients": grads / n if stage >= 2 else grads,
        "optimizer states": states / n if stage >= 1 else states,
        "master weights": master / n if stage >= 1 else (master if bf16 else 0.0),
    }[category]


def report(results: list[dict]) -> str:
    rows = []
    over: list[str] = []
    for entry in results:
        stage, n, bf16 = entry["stage"], entry["world_size"], entry["bf16"]
        precision = "bf16" if bf16 else "fp32"
        params = entry["ranks"][0]["total_params"]
        persistent = entry["ranks"][0]["persistent_params"]
        for category in CATEGORIES:
            ideal = ideal_bytes(category, stage, params, n, bf16)
            per_rank = [r["bytes"][category] for r in entry["ranks"]]
            ratio = max(per_rank) / ideal if ideal else None
            if ratio is not None and ratio > 1.05:
                over.append(f"{precision} N={n} ZeRO-{stage} {category} {ratio:.3f}x")
            rows.append([
                precision, str(n), f"ZeRO-{stage}", category, f"{ideal / 2**20:.3f}",
                f"{min(per_rank) / 2**20:.3f}" + ("" if min(per_rank) == max(per_rank) else f"-{max(per_rank) / 2**20:.3f}"),
                f"{ratio:.3f}" if ratio is not None else ("none, as ideal" if max(per_rank) == 0 else "extra"),
            ])
        listed = {name: max(r["bytes"][name] for r in entry["ranks"]) for name in LISTED}
        peak_ratio = listed["gradient peak"] / ideal_bytes("gradients", stage, params, n, bf16)
        rows.append([
            precision, str(n), f"ZeRO-{stage}", "(gradients, transient peak)", "-", f"{listed['gradient peak'] / 2**20:.3f}",
            f"({peak_ratio:.3f})",
        ])
        note = f"; {persistent:,} of {params:,} parameters persist whole on every rank" if stage == 3 else ""
        rows.append([
            precision, str(n), f"ZeRO-{stage}", "(reduce buckets / other)", "-",
            f"{listed['reduce buckets'] / 2**20:.3f} / {listed['other'] / 2**20:.3f}", f"not compared{note}",
        ])
    return (
        _common.table(rows, ["precision", "N", "stage", "category", "ideal MiB/rank", "measured MiB/rank (min-max)", "max rank / ideal"])
        + "\n\nmore than 5% over the ideal share on some rank: " + ("; ".join(over) if over else "none")
    )


def explain(results: list[dict]) -> str:
    lines = []
    for entry in results:
        for rank in entry["ranks"]:
            precision = "bf16" if entry["bf16"] else "fp32"
            lines.append(f"{precision} N={entry['world_size']} ZeRO-{entry['stage']} rank {rank['rank']}:")
            for category, path, nbytes in sorted(rank["where"], key=lambda w: (w[0], -w[2])):
                lines.append(f"  {category:17s} {nbytes / 2**20:9.3f} MiB  {path}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--stages", type=int, nargs="+", default=[0, 1, 2, 3], choices=[0, 1, 2, 3])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--quick", action="store_true", help="2 workers, fp32 only")
    parser.add_argument("--explain", action="store_true", help="list every storage counted, per rank and category")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _common.use_bench_environment()
    if args.child:
        child(args)
        return 0
    if args.quick:
        args.workers, args.precisions = [2], ["fp32"]
    import tempfile

    _common.header("ZeRO memory per rank vs the ideal share", " ".join(["python", *sys.argv]))
    print(
        f"# model {_common.SMALL_MODEL} (4x256), AdamW; ds_configs/zero0-3.json filled as the worker fills them; "
        f"bf16 = bf16 weights + fp32 gradient accumulation, stages 2-3 only (DeepSpeed on CPU has no bf16 ZeRO-1)",
        flush=True,
    )
    work = Path(args.workdir or tempfile.mkdtemp(prefix="xit-bench-zero-"))
    work.mkdir(parents=True, exist_ok=True)
    _common.small_model_dir()  # build the model once, before the ranks race for it
    _common.prebuild_deepspeed_ops()
    script = Path(__file__).resolve()
    results = []
    with _common.LoadMonitor() as load:
        for precision in args.precisions:
            stages = [s for s in args.stages if precision == "fp32" or s in (2, 3)]
            if not stages:
                continue
            flags = ["--bf16"] if precision == "bf16" else []
            for n in args.workers:
                result = work / f"{precision}-n{n}.json"
                command = _common.torchrun(n, script, ["--child", "--result", str(result), "--stages", *map(str, stages), *flags])
                _common.run_child(command, work / f"{precision}-n{n}.log", timeout=900)
                results += json.loads(result.read_text())
    if args.explain:
        print(explain(results))
    print(report(results))
    print()
    print(load.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
