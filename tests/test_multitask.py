"""Study 5 (and Study 1's MLM member): multi-task mixture stages. Unit tests of the sampler
(hand-computed probabilities, empirical proportions, resumable sequence), of the data positions
(bit-exact resume of the micro-batch stream, RNG included), of the shared-encoder model; then
ONE real Ray + DeepSpeed (ZeRO-3) run: a 2-task + MLM mixture -> XNLI, on the tiny model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tests.conftest import small_spec_tree
from xit_dist.errors import SpecError
from xit_dist.plan.phases import build_plan
from xit_dist.config.load import validate_tree
from xit_dist.train.multitask import (
    TASK_INDEX,
    MemberData,
    MemberSpec,
    Mixture,
    TaskSampler,
    build_multitask_model,
    multitask_model_from_config,
    sampling_probabilities,
)
from xit_dist.train.checkpoint import rng_state

# ---------------------------------------------------------------------------------- sampler


def test_sampling_probabilities_by_hand():
    sizes = {"a": 100, "b": 300}
    assert sampling_probabilities(sizes, "proportional") == pytest.approx({"a": 0.25, "b": 0.75})
    assert sampling_probabilities(sizes, "uniform") == pytest.approx({"a": 0.5, "b": 0.5})
    # temperature 2: sqrt(100) = 10, sqrt(300) = 17.3205; 10 / 27.3205 = 0.36603
    assert sampling_probabilities(sizes, "temperature", temperature=2.0) == pytest.approx({"a": 0.36603, "b": 0.63397}, abs=1e-5)
    # jiant's cap: b counts as 200
    assert sampling_probabilities(sizes, "proportional", examples_cap=200) == pytest.approx({"a": 1 / 3, "b": 2 / 3})
    # MLM's fixed weight first, the tasks share the rest proportionally
    with_mlm = sampling_probabilities({**sizes, "mlm": 5000}, "proportional", fixed={"mlm": 0.2})
    assert with_mlm == pytest.approx({"a": 0.2, "b": 0.6, "mlm": 0.2})
    assert list(with_mlm) == ["a", "b", "mlm"]


def test_sampler_proportions_and_resumable_sequence():
    sampler = TaskSampler(("a", "b", "c"), (0.2, 0.5, 0.3), seed=11)
    draws = [sampler.member_at(step) for step in range(20000)]
    shares = np.bincount(draws, minlength=3) / len(draws)
    assert shares == pytest.approx([0.2, 0.5, 0.3], abs=0.015)
    # a pure function of (seed, step): a sampler rebuilt at step 12345 continues the same sequence
    rebuilt = TaskSampler(("a", "b", "c"), (0.2, 0.5, 0.3), seed=11)
    assert [rebuilt.member_at(step) for step in range(12345, 12400)] == draws[12345:12400]
    other_seed = TaskSampler(("a", "b", "c"), (0.2, 0.5, 0.3), seed=12)
    assert [other_seed.member_at(step) for step in range(200)] != draws[:200]


# ---------------------------------------------------------------------------------- data positions


def noisy_collate(rows):
    """Like MLM masking: the batch depends on torch's global generator."""
    values = torch.tensor(rows, dtype=torch.float32)
    return {"x": values, "noise": torch.rand(len(rows))}


def fresh_mixture(seed: int = 3) -> Mixture:
    from torch.utils.data import DataLoader, DistributedSampler

    data = []
    for name, size in (("a", 10), ("b", 7)):
        rows = list(range(100 * (name == "b"), 100 * (name == "b") + size))
        sampler = DistributedSampler(rows, num_replicas=1, rank=0, shuffle=True, seed=seed, drop_last=True)
        loader = DataLoader(rows, batch_size=2, sampler=sampler, collate_fn=noisy_collate, drop_last=True)
        data.append(MemberData(name, loader, sampler, size))
    members = [MemberSpec("a", None), MemberSpec("b", None)]
    return Mixture(None, members, data, TaskSampler(("a", "b"), (0.6, 0.4), seed))


def initial_progress(mixture: Mixture) -> dict:
    return {"global_step": 0, "mixture": {"cursors": {"a": [0, 0], "b": [0, 0]}, "steps": {"a": 0, "b": 0}}}


def as_plain(batch: dict) -> tuple:
    return int(batch[TASK_INDEX]), batch["x"].tolist(), batch["noise"].tolist()


@pytest.mark.parametrize("stop_step", [1, 4, 5, 9])
def test_mixture_stream_resumes_bit_for_bit(stop_step):
    """Run 14 steps of 2 micro batches; 'checkpoint' after ``stop_step`` steps (progress and RNG
    state, as the worker saves them); a fresh mixture resumed from it yields exactly the rest."""
    accumulation, steps = 2, 14
    torch.manual_seed(0)
    mixture = fresh_mixture()
    progress = initial_progress(mixture)
    stream = mixture.micro_batches(progress, accumulation)
    seen, snapshot = [], None
    for index in range(steps * accumulation):
        seen.append(as_plain(next(stream)))
        if (index + 1) % accumulation == 0:
            progress["global_step"] += 1  # what run_loop does after each optimizer step
            if progress["global_step"] == stop_step:
                snapshot = (copy.deepcopy(progress), rng_state())
    counts = {name: progress["mixture"]["steps"][name] for name in ("a", "b")}
    assert sum(counts.values()) == steps and min(counts.values()) > 0
    # every micro batch of a step comes from the same member
    for step in range(steps):
        assert seen[2 * step][0] == seen[2 * step + 1][0]
    # epochs: member a has 5 micro batches per epoch, b has 3; a cursor never passes its epoch's end
    for name, size in (("a", 5), ("b", 3)):
        assert 1 <= progress["mixture"]["cursors"][name][1] <= size

    saved_progress, saved_rng = snapshot
    torch.manual_seed(999)  # a new process: another generator state until the checkpoint's is restored
    resumed = fresh_mixture().micro_batches(saved_progress, accumulation, rng=saved_rng)
    rest = [as_plain(next(resumed)) for _ in range((steps - stop_step) * accumulation)]
    assert rest == seen[stop_step * accumulation :]


def test_each_member_reshuffles_per_epoch():
    torch.manual_seed(0)
    mixture = fresh_mixture()
    progress = initial_progress(mixture)
    stream = mixture.micro_batches(progress, 1)
    rows_of_a = []
    while len(rows_of_a) < 10:  # two epochs of member a (5 micro batches each)
        batch = next(stream)
        if int(batch[TASK_INDEX]) == 0:
            rows_of_a.append(tuple(int(v) for v in batch["x"]))
        progress["global_step"] += 1
    first, second = rows_of_a[:5], rows_of_a[5:]
    assert sorted(v for b in first for v in b) == list(range(10))
    assert sorted(v for b in second for v in b) == list(range(10))
    assert first != second


# ---------------------------------------------------------------------------------- model


@pytest.fixture(scope="module")
def tiny_dir():
    from xit_dist.builtin.assets import resolve_model_dir

    return resolve_model_dir("builtin:xlmr-tiny")


def test_one_shared_encoder_one_head_each_and_the_mlm_head_tied(tiny_dir):
    members = [MemberSpec("mnli", "mnli"), MemberSpec("hellaswag", "hellaswag"), MemberSpec("mlm", None)]
    model = build_multitask_model(tiny_dir, members)
    names = [name for name, _ in model.named_parameters()]
    encoder_names = [name for name, _ in model.encoder.named_parameters()]
    assert len(names) == len(set(names))
    assert [n for n in names if ".roberta." in n] == []  # no member keeps an encoder of its own
    assert sum(n.startswith("encoder.") for n in names) == len(encoder_names)
    assert model.encoder.pooler is not None  # multiple choice needs the pooler
    assert model.heads["mlm"].lm_head.decoder.weight is model.encoder.embeddings.word_embeddings.weight
    assert model.heads["mnli"].roberta is model.encoder and model.heads["hellaswag"].roberta is model.encoder
    inputs = {"input_ids": torch.tensor([[0, 5, 6, 2]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    pair = model(task_index=torch.tensor(0), labels=torch.tensor([1]), **inputs)
    assert pair.logits.shape == (1, 3)
    choice = {k: v.unsqueeze(1).expand(1, 4, 4) for k, v in inputs.items()}
    assert model(task_index=torch.tensor(1), labels=torch.tensor([2]), **choice).logits.shape == (1, 4)
    masked = model(task_index=torch.tensor(2), labels=torch.tensor([[-100, 5, -100, -100]]), **inputs)
    masked.loss.backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad is not None
    assert model.heads["mnli"].classifier.dense.weight.grad is None  # only the trained head gets gradients
    # consolidation rebuilds the same structure and loads the state strictly
    rebuilt = multitask_model_from_config(tiny_dir, members)
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_mixture_spec_options_and_hash(tmp_path):
    tree = small_spec_tree(tmp_path)
    tree["intermediate"] = [{"tasks": ["mnli", "pawsx"], "training": tree["intermediate"][0]["training"]}]
    spec = validate_tree(tree)
    assert spec.intermediate[0].task == "mnli+pawsx"
    hashes = {build_plan(spec)[0].hash}
    for change in ({"tasks": ["pawsx", "mnli"]}, {"sampling": "uniform"}, {"sampling": "temperature", "temperature": 3.0},
                   {"examples_cap": 1000}, {"mlm": {"corpus": "builtin:demo", "weight": 0.2}}):
        changed = copy.deepcopy(tree)
        changed["intermediate"][0].update(change)
        hashes.add(build_plan(validate_tree(changed))[0].hash)
    assert len(hashes) == 6
    bad = copy.deepcopy(tree)
    bad["intermediate"][0]["tasks"] = ["mnli", "xnli_nope"]
    with pytest.raises(SpecError, match="unknown task 'xnli_nope'"):
        validate_tree(bad)
    bad = copy.deepcopy(tree)
    bad["intermediate"][0]["mlm"] = {"files": ["/no/such.txt"]}
    with pytest.raises(SpecError, match=r"intermediate\.0\.mlm: files: not found: /no/such.txt"):
        validate_tree(bad)
    bad = copy.deepcopy(tree)
    bad["intermediate"][0]["training"]["eval_every_n_steps"] = 10
    with pytest.raises(SpecError, match="not available in a mixture stage"):
        validate_tree(bad)


# ---------------------------------------------------------------------------------- Ray + DeepSpeed


@pytest.fixture(scope="module")
def mixture_run(ray_cluster, tmp_path_factory):
    """mnli + pawsx + MLM on the demo corpus (weight 0.2; 600 rows of each), 20 steps under
    ZeRO-3 on 2 workers, then 10 XNLI steps, evaluated on 2 languages with and without a
    word-order shuffle."""
    from xit_dist.run.scheduler import run_experiment

    out = tmp_path_factory.mktemp("mixture")
    tree = small_spec_tree(out, name="mixture", deepspeed="zero3")  # the harder case: every head's partitions under one engine
    training = {**tree["intermediate"][0]["training"], "max_steps": 20, "log_every_n_steps": 5, "checkpoint_every_n_steps": 10,
                "max_train_examples": 600}
    tree["intermediate"] = [
        {"tasks": ["mnli", "pawsx"], "mlm": {"corpus": "builtin:demo", "weight": 0.2, "max_lines": 600}, "training": training}
    ]
    tree["target"]["training"].update(max_steps=10, log_every_n_steps=5)
    tree["evaluation"].update(
        languages=["en", "de"], max_examples_per_language=50,
        perturbations=[{"kind": "shuffle", "apply_to": ["text_a", "text_b"]}],
    )
    spec = validate_tree(tree)
    return spec, run_experiment(spec)


@pytest.mark.ray
def test_mixture_trains_every_head_and_hands_on_its_encoder(mixture_run):
    from tests.test_pipeline import encoder_fingerprint_of

    spec, summary = mixture_run
    intermediate, target = summary.phases
    record = intermediate.record
    mixture = record["mixture"]
    assert [m["name"] for m in mixture["members"]] == ["mnli", "pawsx", "mlm"]
    assert mixture["probabilities"]["mlm"] == pytest.approx(0.2)
    sizes = mixture["sizes"]
    assert mixture["probabilities"]["mnli"] == pytest.approx(0.8 * sizes["mnli"] / (sizes["mnli"] + sizes["pawsx"]))
    assert sum(mixture["steps"].values()) == record["total_steps"] == 20
    assert all(mixture["steps"][name] > 0 for name in ("mnli", "pawsx", "mlm")), mixture["steps"]
    # the drawn sequence is the sampler's: recompute it from (seed, step)
    sampler = TaskSampler(tuple(mixture["probabilities"]), tuple(mixture["probabilities"].values()), spec.seed)
    drawn = np.bincount([sampler.member_at(step) for step in range(20)], minlength=3)
    assert dict(zip(("mnli", "pawsx", "mlm"), drawn.tolist())) == mixture["steps"]
    for name in ("mnli", "pawsx", "mlm"):  # every head moved
        assert mixture["init_head_fingerprints"][name] != mixture["final_head_fingerprints"][name]
    assert record["zero_stage"] == 3 and record["world_size"] == 2
    # the saved encoder is the engine's (consolidate checks it) and the target starts from it
    saved = encoder_fingerprint_of(intermediate.output_dir)
    assert saved == record["final_engine_fingerprint"] != record["init_encoder_fingerprint"]
    assert target.record["init_encoder_fingerprint"] == saved
    assert record["phase_id"].startswith("mnli+pawsx-")


@pytest.mark.ray
def test_perturbed_evaluation_is_logged_per_language_and_perturbation(mixture_run):
    from mlflow.tracking import MlflowClient

    _, summary = mixture_run
    metrics = summary.results.mlflow_metrics()
    for lang in ("en", "de"):
        assert 0 <= metrics[f"xnli.accuracy.{lang}.shuffle"] <= 100
    assert metrics["xnli.accuracy.drop.shuffle"] == pytest.approx(
        metrics["xnli.accuracy.avg"] - metrics["xnli.accuracy.avg.shuffle"]
    )
    logged = MlflowClient(summary.tracking_uri).get_run(summary.parent_run_id).data.metrics
    assert logged["xnli.accuracy.de.shuffle"] == metrics["xnli.accuracy.de.shuffle"]
    assert (summary.run_dir / "xnli_perturbations.csv").is_file()
