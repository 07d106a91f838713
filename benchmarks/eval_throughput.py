"""Zero-shot evaluation throughput: length-sorted batches against padding every batch to the
maximum length.

    python benchmarks/eval_throughput.py           # XNLI, every language of the demo data, 5 repetitions (~2 min)
    python benchmarks/eval_throughput.py --quick   # 2 repetitions

The model is the 4 x 256 XLM-R config (``builtin:xlmr-small``) with a sequence-classification
head; the data is every XNLI language in the demo benchmark (``builtin:demo``), featurised by
the task's format as an evaluation does (max length 128, batch 64, one CPU thread: one worker's
share). Three ways to batch the same rows, timed interleaved, same model, same thread count:

- ``sorted``: what xit-dist runs, ``predict_shard`` in xit_dist/evaluate/zero_shot.py (rows
  sorted by length, a batch ends early rather than pad more than 5% of its tokens, padded to
  its longest row);
- ``sorted, before``: the same before the padding cap (fixed batches of 64 in length order, the
  format's collator rounding each batch up to a multiple of 8), for the before/after record;
- ``naive``: rows in file order, every batch padded to the maximum length (``padding="max_length"``);
- ``dynamic``: rows in file order, padded per batch by the format's collator (for reference).

Tokens/s counts real (non-padding) tokens over the prediction time; padding fraction is padding
tokens over all tokens fed (counted by a forward pre-hook on the model: what it really got). Predictions of ``sorted`` and ``naive`` are compared row by row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

MAX_LENGTH = 128
BATCH_SIZE = 64


def spec_tree(languages: list[str], threads: int) -> dict:
    training = {"max_seq_length": MAX_LENGTH, "batch_size": 32}
    return {
        "name": "eval-bench",
        "output_dir": "/tmp/xit-bench-eval-unused",
        "model": {"name_or_path": _common.SMALL_MODEL},
        "data": {"local_dir": "builtin:demo"},
        "target": {"task": "xnli", "training": training},
        "evaluation": {"split": "test", "languages": languages, "batch_size": BATCH_SIZE},
        "distributed": {"num_workers": 1, "cpus_per_worker": threads},
    }


def demo_languages(task: str) -> list[str]:
    manifest = json.loads((_common.demo_data_dir() / "MANIFEST.json").read_text())
    return list(manifest["languages"][task])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one worker's share)")
    parser.add_argument("--quick", action="store_true", help="2 repetitions")
    args = parser.parse_args(argv)
    _common.use_bench_environment()
    if args.quick:
        args.repeats = 2

    _common.header("zero-shot evaluation: length-sorted batches vs padding to max length", " ".join(["python", *sys.argv]))
    import torch
    from transformers import AutoTokenizer

    from xit_dist.data.features import evaluation_inputs
    from xit_dist.evaluate.zero_shot import predict_shard
    from xit_dist.console import quiet_third_party
    from xit_dist.plan.phases import build_plan
    from xit_dist.plan.preflight import preflight
    from xit_dist.run.jobs import eval_job
    from xit_dist.config.load import validate_tree
    from xit_dist.tasks.registry import get_task
    from xit_dist.tasks.formats import get_format

    quiet_third_party()
    torch.set_num_threads(args.threads)
    spec = validate_tree(spec_tree(demo_languages("xnli"), args.threads))
    inputs = preflight(spec)
    phase = build_plan(spec)[-1]
    job = eval_job(spec, phase, inputs)
    task = get_task(job.task)
    fmt = get_format(task.format)
    tokenizer = AutoTokenizer.from_pretrained(inputs.model_dir)
    torch.manual_seed(0)
    model = fmt.model_class().from_pretrained(inputs.model_dir, **fmt.label_config(task)).eval()
    device = torch.device("cpu")
    print(
        f"# model {_common.SMALL_MODEL} (4x256), task xnli, languages {' '.join(job.languages)}, max length {MAX_LENGTH}, "
        f"batch {BATCH_SIZE}, {args.threads} thread(s), {args.repeats} repetitions", flush=True,
    )

    per_language = {}
    for lang in job.languages:
        _, features = evaluation_inputs(task, task.eval_source(job.split, lang), tokenizer, job.options, job.data_dir, job.data_revision)
        per_language[lang] = features
    lengths = {lang: fmt.feature_lengths(f) for lang, f in per_language.items()}
    real_tokens = sum(sum(v) for v in lengths.values())
    rows = sum(len(v) for v in lengths.values())

    collate = fmt.collator(tokenizer)

    def in_order(lang: str) -> list[list[int]]:
        n = len(lengths[lang])
        return [list(range(i, min(i + BATCH_SIZE, n))) for i in range(0, n, BATCH_SIZE)]

    def by_length(lang: str) -> list[list[int]]:
        order = sorted(range(len(lengths[lang])), key=lambda i: (lengths[lang][i], i))
        return [order[i : i + BATCH_SIZE] for i in range(0, len(order), BATCH_SIZE)]

    @torch.no_grad()
    def predict_batches(lang: str, batches: list[list[int]], pad_to_max: bool) -> dict[int, object]:
        """The given batches of row indices, padded to max length (naive) or by the format's
        collator (to each batch's longest row, rounded up to a multiple of 8)."""
        features = per_language[lang]
        columns = {name: features[name] for name in fmt.model_inputs}
        out = {}
        for batch_indices in batches:
            rows_ = [{n: c[i] for n, c in columns.items()} for i in batch_indices]
            if pad_to_max:
                batch = tokenizer.pad(rows_, padding="max_length", max_length=MAX_LENGTH, return_tensors="pt")
            else:
                batch = collate(rows_)
            out.update(zip(batch_indices, fmt.predict(model, dict(batch), job.options)))
        return out

    ways = {
        "sorted": lambda lang: predict_shard(model, per_language[lang], list(range(len(lengths[lang]))), job, tokenizer, fmt, device),
        # xit-dist before the padding cap: fixed batches in length order, the collator's padding
        "sorted, before": lambda lang: predict_batches(lang, by_length(lang), pad_to_max=False),
        "naive": lambda lang: predict_batches(lang, in_order(lang), pad_to_max=True),
        "dynamic": lambda lang: predict_batches(lang, in_order(lang), pad_to_max=False),
    }
    fed: dict[str, int] = {}
    batches: dict[str, int] = {}

    def count_tokens(_module, _args, kwargs):  # what the model is really fed, padding included
        fed[current] = fed.get(current, 0) + kwargs["input_ids"].numel()
        batches[current] = batches.get(current, 0) + 1

    seconds: dict[str, list[float]] = {name: [] for name in ways}
    predictions: dict[str, dict] = {}
    with _common.LoadMonitor() as load:
        hook = model.register_forward_pre_hook(count_tokens, with_kwargs=True)
        for current in ways:  # one untimed pass each, counting tokens: also first-call allocations
            predictions[current] = {lang: ways[current](lang) for lang in lengths}
        hook.remove()
        for rep in range(args.repeats):
            order = list(ways)[rep % len(ways):] + list(ways)[: rep % len(ways)]
            for name in order:
                start = time.perf_counter()
                for lang in lengths:
                    ways[name](lang)
                seconds[name].append(time.perf_counter() - start)

    agree = sum(predictions["sorted"][l][i] == predictions["naive"][l][i] for l in lengths for i in range(len(lengths[l])))
    table_rows = []
    median_s = {name: statistics.median(v) for name, v in seconds.items()}
    for name in ways:
        table_rows.append([
            name, str(batches[name]), f"{fed[name]:,}", f"{(fed[name] - real_tokens) / fed[name] * 100:.1f}%",
            f"{median_s[name]:.2f} ({min(seconds[name]):.2f}-{max(seconds[name]):.2f})",
            f"{real_tokens / median_s[name]:,.0f}", f"{median_s['naive'] / median_s[name]:.2f}x",
        ])
    print(f"\n{rows:,} rows, {real_tokens:,} real tokens (mean {real_tokens / rows:.1f} per row) in {len(lengths)} languages\n")
    print(_common.table(table_rows, ["batching", "batches", "tokens fed", "padding", "seconds, median (min-max)", "real tokens/s", "speed-up vs naive"]))
    print(f"\nsame prediction (sorted vs naive): {agree}/{rows} rows")
    print(load.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
