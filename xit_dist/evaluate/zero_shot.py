"""Zero-shot evaluation in every language of the target task, sharded across the workers.

Each worker predicts its shard of each language (rows rank, rank+W, ...) in length-sorted
batches; predictions are gathered on rank 0, which scores them. Under ZeRO-3 a forward pass is
a collective, so every rank runs the same number of batches: ranks with fewer rows repeat a
batch and discard its output, so unequal shards can never hang.

It runs in two places with the same code: at the end of the target phase on the live engine
(no extra worker group), and as its own worker group on a saved model (re-evaluating a
reused phase with other settings).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from xit_dist.evaluate.metrics import SCORING_VERSION, metric_library_versions
from xit_dist.evaluate.job import EvalJob

RESULTS_FILE = "results.json"


def evaluation_key(job: EvalJob) -> str:
    """Identifies an evaluation's settings (not where the model is or how many CPUs it gets)."""
    settings = job.model_dump(exclude={"model_dir", "cpus_per_worker", "phase_id"})
    if not job.perturbations and not job.calibration:  # keys of evaluations without Study 4's options stay as they were
        settings.pop("perturbations"), settings.pop("calibration")
    settings["scoring_version"] = SCORING_VERSION  # a metric fixed since then is scored again
    settings["libraries"] = metric_library_versions()  # as is one scored by another seqeval
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def configure_threads(cpus_per_worker: float) -> None:
    """One intra-op thread per CPU Ray gave this worker: more only oversubscribes the cores
    (every worker of a phase or an evaluation calls it)."""
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, int(cpus_per_worker)))


def shard_indices(num_rows: int, rank: int, world_size: int) -> list[int]:
    return list(range(rank, num_rows, world_size))


# Most padding left after sorting is where the length steps up inside a batch (short rows,
# few rows per language): a batch ends early rather than pad more than this share of its tokens.
# Demo XNLI, batch 64: 23.5% padding before (with the multiple-of-8 rounding), 1.9% after
# (benchmarks/eval_throughput.py, BENCHMARKS.md).
MAX_BATCH_PADDING = 0.05


def length_sorted_batches(lengths: list[int], indices: list[int], batch_size: int, max_padding: float | None = None) -> list[list[int]]:
    """Batches of rows of similar length: little padding, same predictions. With
    ``max_padding``, a batch also ends before a row that would make its padding exceed that
    fraction of its tokens (rows come shortest first, so the new row sets the padded length)."""
    ordered = sorted(indices, key=lambda i: (lengths[i], i))
    if max_padding is None:
        return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for index in ordered:
        padded = (len(current) + 1) * lengths[index]
        if current and (len(current) == batch_size or padded - (tokens + lengths[index]) > max_padding * padded):
            batches.append(current)
            current, tokens = [], 0
        current.append(index)
        tokens += lengths[index]
    if current:
        batches.append(current)
    return batches


def equal_batch_count(batches: list[list[int]], device) -> int:
    """The largest number of batches any rank has (one small all-reduce)."""
    count = torch.tensor([len(batches)], device=device)
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MAX)
    return int(count.item())


@torch.no_grad()
def predict_shard(model, features, indices: list[int], job: EvalJob, tokenizer, fmt, device) -> dict[int, Any]:
    collate = fmt.collator(tokenizer)
    # The batches already share a length; rounding it up to a multiple of 8 (the collators'
    # tensor-core alignment for training) would be most of the padding left on short rows.
    if getattr(collate, "pad_to_multiple_of", None):
        collate.pad_to_multiple_of = None
    # Columns as plain lists once: indexing the dataset row by row in the loop reads Arrow per row.
    columns = {name: features[name] for name in fmt.model_inputs}
    batches = length_sorted_batches(fmt.feature_lengths(features), indices, job.batch_size, MAX_BATCH_PADDING)
    padded_total = equal_batch_count(batches, device)
    filler = batches[0] if batches else [0]  # any real row keeps the forward pass valid
    out: dict[int, Any] = {}
    for step in range(padded_total):
        batch_indices = batches[step] if step < len(batches) else filler
        rows = [{name: column[i] for name, column in columns.items()} for i in batch_indices]
        batch = {k: v.to(device) for k, v in collate(rows).items()}
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=job.bf16):
            predictions = fmt.predict(model, batch, job.options)
        if step < len(batches):
            out.update(zip(batch_indices, predictions))
    return out


def gather_to_rank0(local: dict[int, Any], world_size: int) -> dict[int, Any]:
    if world_size == 1 or not torch.distributed.is_initialized():
        return local
    gathered: list[dict[int, Any]] = [{} for _ in range(world_size)]
    torch.distributed.all_gather_object(gathered, local)
    merged: dict[int, Any] = {}
    for part in gathered:
        merged.update(part)
    return merged


def evaluate_languages(model, tokenizer, job: EvalJob, rank: int, world_size: int, device, verbose: bool = True,
                       with_datasets: bool = True) -> dict[str, Any]:
    """Every rank calls this; rank 0 returns ``{"results": {lang: {metric: score}}, "counts": ...}``,
    and, ``with_datasets``, the record of every split it read (``"datasets"``; a validation that
    reads the same dev set again and again does without)."""
    from xit_dist.data.dataset_records import EVALUATION, dataset_record
    from xit_dist.data.features import evaluation_inputs
    from xit_dist.evaluate.robustness import calibration_stats, series_key
    from xit_dist.tasks.registry import get_task
    from xit_dist.tasks.formats import get_format

    task = get_task(job.task)
    fmt = get_format(task.format)
    was_training = model.training
    model.eval()
    results: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    perturbed: dict[str, dict[str, dict[str, float]]] = {p.name: {} for p in job.perturbations}  # Study 4
    reliability: dict[str, dict] = {}
    datasets: list[dict] = []  # what was read, per language (data.dataset_records)
    for lang in job.languages:
        source = task.eval_source(job.split, lang)
        for perturbation in [None, *job.perturbations]:
            rows, features = evaluation_inputs(
                task, source, tokenizer, job.options, job.data_dir, job.data_revision, limit=job.max_examples_per_language,
                perturbation=perturbation,
            )
            mine = shard_indices(len(features), rank, world_size)
            merged = gather_to_rank0(predict_shard(model, features, mine, job, tokenizer, fmt, device), world_size)
            if rank != 0:
                continue
            ordered = [merged[i] for i in range(len(features))]
            scores = fmt.score(task, rows, features, ordered, lang, job.options)
            stats = calibration_stats(fmt, task, rows, features, ordered, lang, job.options) if job.calibration else None
            if stats is not None:
                scores.update(stats.metrics())
                reliability[series_key(lang, perturbation and perturbation.name)] = stats.to_dict()
            if verbose:
                label = f"{lang} {perturbation.name}" if perturbation else lang
                print(f"[{job.phase_id}] {task.name} {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()), flush=True)
            if perturbation is not None:
                perturbed[perturbation.name][lang] = scores
                continue
            results[lang], counts[lang] = scores, fmt.num_examples(rows, features)
            if with_datasets:
                datasets.append(dataset_record(task.name, source, rows, job.data_dir, job.data_revision, EVALUATION))
    model.train(was_training)
    evaluation = {"key": evaluation_key(job), "results": results, "counts": counts, "datasets": datasets}
    if job.perturbations:
        evaluation["perturbed"] = perturbed
    if reliability:
        evaluation["reliability"] = reliability
    return evaluation


def evaluate_worker(config: dict[str, Any]) -> None:
    """Entry point of a stand-alone evaluation worker group, on a saved model."""
    import tempfile
    from pathlib import Path

    import ray.train
    from transformers import AutoTokenizer

    from xit_dist.console import quiet_third_party
    from xit_dist.tasks.registry import get_task
    from xit_dist.tasks.formats import get_format
    from xit_dist.tracking.object_files import local_copy

    quiet_third_party()
    job = EvalJob.model_validate(config)
    job = job.model_copy(update={"model_dir": local_copy(job.model_dir)})  # a bucket's model: once per node
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    configure_threads(job.cpus_per_worker)
    device = ray.train.torch.get_device()
    tokenizer = AutoTokenizer.from_pretrained(job.model_dir, revision=job.model_revision)
    model = get_format(get_task(job.task).format).model_class().from_pretrained(job.model_dir, revision=job.model_revision).to(device)
    evaluation = evaluate_languages(model, tokenizer, job, rank, world_size, device)
    # Ray keeps only checkpointed metrics in a run's result: rank 0 returns the scores as a
    # small checkpoint; every rank must call report.
    if rank != 0:
        ray.train.report({})
        return
    with tempfile.TemporaryDirectory(prefix="xit-eval-") as tmp:
        Path(tmp, RESULTS_FILE).write_text(json.dumps(evaluation))
        ray.train.report({"languages": len(evaluation["results"])}, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def run_evaluation(job: EvalJob, num_workers: int, use_gpu: bool, storage_path: str, run_name: str) -> dict[str, Any]:
    from pathlib import Path

    from ray.train import LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    trainer = TorchTrainer(
        evaluate_worker,
        train_loop_config=job.model_dump(),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=num_workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": job.cpus_per_worker, **({"GPU": 1} if use_gpu else {})},
        ),
        run_config=RunConfig(name=run_name, storage_path=storage_path, logging_config=LoggingConfig(log_level="WARNING")),
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as directory:
        return json.loads(Path(directory, RESULTS_FILE).read_text())
