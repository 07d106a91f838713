"""Multi-task mixture stages (Study 5; and Study 1's MLM mixed into a stage): several tasks
train one shared encoder, each through its own head, one task per optimizer step.

The model (``MultiTaskModel``): each member is its format's usual transformers model
(``AutoModelForSequenceClassification``, ``...ForQuestionAnswering``, ``...ForMaskedLM``...), so
heads, losses and forward passes are the library's; their encoders are replaced by ONE shared
encoder, registered once (under ``encoder``) so that DeepSpeed sees every parameter exactly once
and, under ZeRO-3, partitions and gathers it once. A member whose output embeddings are tied to
the input embeddings (the MLM head) is re-tied to the shared encoder's. If a member needs the
encoder's pooler (multiple choice), the shared encoder is one that has it. The whole thing is the
one module given to ``deepspeed.initialize``; the phase saves ``encoder``.

The sampler (jiant's): with n_i a member's training size (features; ``examples_cap`` caps it),
``proportional`` draws task i with P ~ n_i, ``uniform`` with P = 1/k, ``temperature`` with
P ~ n_i^(1/T). An MLM member with ``mlm.weight`` w gets P = w and the tasks share 1 - w.
Step s trains on ``choice(P)`` drawn from ``numpy.random.default_rng([seed, s])``: the same on
every rank (ZeRO-3 needs every rank in the same head's forward) and a pure function of the
step, so resuming at step s continues the exact sequence. All micro batches of one step
(gradient accumulation) come from the same task.

Data positions: each member has its own loader (a DistributedSampler, like a single-task phase)
and a cursor (epoch, micro batches consumed) kept in the checkpoint's progress record
(``progress["mixture"]``), so a resumed phase re-opens each member's data where it stood, then
restores the RNG state; it ends bit-for-bit where an uninterrupted run does. Epochs: a phase
of ``epochs`` E runs E x (sum of the members' steps per epoch) steps, i.e. E passes over the
mixture under proportional sampling; ``max_steps`` caps it.

Not available in a mixture: English-dev validation (``eval_every_n_steps``; which task's dev?).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from xit_dist.config.batch import split_batch
from xit_dist.data.stage_data import StageData
from xit_dist.train.checkpoint import restore_rng_state
from xit_dist.train.job import PhaseJob
from xit_dist.train.loop import shard_loader

TASK_INDEX = "task_index"  # batch key naming the member; MultiTaskModel.forward routes on it

# ---------------------------------------------------------------------------------- sampler


def sampling_probabilities(
    sizes: dict[str, int],
    sampling: str,
    temperature: float = 2.0,
    examples_cap: int | None = None,
    fixed: dict[str, float] | None = None,
) -> dict[str, float]:
    """P(member) for every member; ``fixed`` members (MLM's weight) take their share first."""
    fixed = fixed or {}
    free = {name: size for name, size in sizes.items() if name not in fixed}
    capped = {name: min(size, examples_cap) if examples_cap else size for name, size in free.items()}
    if sampling == "uniform":
        raw = {name: 1.0 for name in capped}
    elif sampling == "proportional":
        raw = {name: float(size) for name, size in capped.items()}
    elif sampling == "temperature":
        raw = {name: float(size) ** (1.0 / temperature) for name, size in capped.items()}
    else:
        raise ValueError(f"unknown sampling {sampling!r}")
    rest = 1.0 - sum(fixed.values())
    total = sum(raw.values())
    probabilities = {name: rest * value / total for name, value in raw.items()}
    probabilities.update(fixed)
    return {name: probabilities[name] for name in sizes}  # members' order


@dataclass(frozen=True)
class TaskSampler:
    """Which member trains at each step: a pure function of (seed, step)."""

    names: tuple[str, ...]
    probabilities: tuple[float, ...]
    seed: int

    def member_at(self, step: int) -> int:
        return int(np.random.default_rng([self.seed, step]).choice(len(self.names), p=self.probabilities))


# ---------------------------------------------------------------------------------- model


class MultiTaskModel(torch.nn.Module):
    """One shared encoder and one head model per member; ``forward(task_index=i, **batch)``
    runs member i's own forward (its loss included)."""

    def __init__(self, encoder: torch.nn.Module, heads: dict[str, torch.nn.Module]):
        super().__init__()
        self.encoder = encoder
        self.heads = torch.nn.ModuleDict(heads)
        self.names = list(heads)

    @property
    def base_model(self) -> torch.nn.Module:
        """The encoder: what the phase saves and what fingerprints cover (as ``base_model`` of a
        single-task model)."""
        return self.encoder

    def forward(self, task_index, **batch):
        return self.heads[self.names[int(task_index)]](**batch)


def share_encoder(model: torch.nn.Module, encoder: torch.nn.Module) -> None:
    """Make ``model`` run on ``encoder``: its own encoder is dropped from its modules, and the
    shared one is set as a plain attribute, so it is reachable by ``model.forward`` but
    registered only once (under ``MultiTaskModel.encoder``). Tied output embeddings are re-tied."""
    prefix = model.base_model_prefix
    model._modules.pop(prefix, None)
    object.__setattr__(model, prefix, encoder)
    output = model.get_output_embeddings()
    if output is not None and getattr(model.config, "tie_word_embeddings", False):
        output.weight = encoder.get_input_embeddings().weight


def has_pooler(encoder: torch.nn.Module) -> bool:
    return getattr(encoder, "pooler", None) is not None


def assemble(models: dict[str, torch.nn.Module]) -> MultiTaskModel:
    """Members' models (each with its own encoder copy) -> one MultiTaskModel. The shared encoder
    is the first member's, or the first one with a pooler when some member needs it."""
    encoders = {name: getattr(model, model.base_model_prefix) for name, model in models.items()}
    encoder = next((e for e in encoders.values() if has_pooler(e)), next(iter(encoders.values())))
    for model in models.values():
        share_encoder(model, encoder)
    return MultiTaskModel(encoder, models)


@dataclass(frozen=True)
class MemberSpec:
    """How to build one member's model: its name, the transformers auto class, head kwargs."""

    name: str
    task: str | None  # None: the MLM member

    def model_class_and_kwargs(self):
        if self.task is None:
            from xit_dist.data.mlm import mlm_model_class

            return mlm_model_class(), {}
        from xit_dist.tasks.registry import get_task
        from xit_dist.tasks.formats import get_format

        task = get_task(self.task)
        fmt = get_format(task.format)
        return fmt.model_class(), fmt.label_config(task)


def member_specs(stage: StageData) -> list[MemberSpec]:
    from xit_dist.data.mlm import MEMBER_NAME

    members = [MemberSpec(name, name) for name in stage.tasks]
    if stage.mlm is not None:
        members.append(MemberSpec(MEMBER_NAME, None))
    return members


def build_multitask_model(init_dir: str, members: list[MemberSpec], revision: str | None = None) -> MultiTaskModel:
    """Every member from ``init_dir`` (heads the checkpoint holds, such as a pretrained MLM
    head, are loaded; the others start fresh), then assembled on one encoder."""
    models = {}
    for member in members:
        cls, kwargs = member.model_class_and_kwargs()
        models[member.name] = cls.from_pretrained(init_dir, revision=revision, **kwargs)
    return assemble(models)


def multitask_model_from_config(init_dir: str, members: list[MemberSpec], revision: str | None = None) -> MultiTaskModel:
    """The same structure without loading weights (consolidation loads the checkpoint's)."""
    from transformers import AutoConfig

    models = {}
    for member in members:
        cls, kwargs = member.model_class_and_kwargs()
        models[member.name] = cls.from_config(AutoConfig.from_pretrained(init_dir, revision=revision, **kwargs))
    return assemble(models)


def members_from_record(mixture: dict[str, Any]) -> list[MemberSpec]:
    return [MemberSpec(m["name"], m["task"]) for m in mixture["members"]]


# ---------------------------------------------------------------------------------- data


@dataclass
class MemberData:
    name: str
    loader: Any
    sampler: Any
    num_features: int


def member_data(job: PhaseJob, member: MemberSpec, tokenizer, rank: int, world_size: int, records: list | None = None) -> MemberData:
    """One member's training features, sharded and batched like a single-task phase's;
    ``records`` receives what a task member read (``data.dataset_records``)."""
    stage = job.stage
    if member.task is None:
        from xit_dist.data.mlm import mlm_collator, mlm_features

        features = mlm_features(stage.mlm, tokenizer, job.options.max_seq_length)
        collate = mlm_collator(tokenizer, stage.mlm.probability)
    else:
        from xit_dist.data.features import training_features
        from xit_dist.tasks.registry import get_task
        from xit_dist.tasks.formats import get_format

        task = get_task(member.task)
        features = training_features(
            task, tokenizer, job.options, stage.data_dirs.get(member.task), job.data_revision,
            limit=job.training.max_train_examples, stage=stage, records=records,
        )
        collate = get_format(task.format).collator(tokenizer)
    micro = split_batch(job.training, world_size).micro_batch_size
    loader, sampler = shard_loader(features, collate, micro, rank, world_size, job.seed)
    if len(loader) == 0:
        raise ValueError(f"mixture member {member.name}: {len(features)} training rows give no micro batch of {micro} per worker")
    return MemberData(member.name, loader, sampler, len(features))


@dataclass
class Mixture:
    """Everything a mixture phase needs on a worker: members' data, the sampler, the model."""

    job: PhaseJob
    members: list[MemberSpec]
    data: list[MemberData]
    sampler: TaskSampler

    @classmethod
    def build(cls, job: PhaseJob, tokenizer, rank: int, world_size: int, records: list | None = None) -> "Mixture":
        from xit_dist.data.mlm import MEMBER_NAME

        stage = job.stage
        members = member_specs(stage)
        data = [member_data(job, member, tokenizer, rank, world_size, records) for member in members]
        fixed = {MEMBER_NAME: stage.mlm.weight} if stage.mlm is not None and stage.mlm.weight is not None else {}
        probabilities = sampling_probabilities(
            {d.name: d.num_features for d in data}, stage.sampling, stage.temperature, stage.examples_cap, fixed
        )
        sampler = TaskSampler(tuple(probabilities), tuple(probabilities.values()), job.seed)
        return cls(job, members, data, sampler)

    @property
    def micro_batches_per_epoch(self) -> int:
        return sum(len(d.loader) for d in self.data)

    def build_model(self) -> MultiTaskModel:
        return build_multitask_model(self.job.init_dir, self.members, self.job.model_revision)

    def initial_state(self) -> dict[str, Any]:
        """The mixture's part of the progress record (saved in every checkpoint)."""
        return {
            "members": [{"name": m.name, "task": m.task} for m in self.members],
            "probabilities": dict(zip(self.sampler.names, self.sampler.probabilities)),
            "sizes": {d.name: d.num_features for d in self.data},
            "cursors": {d.name: [0, 0] for d in self.data},  # [epoch, micro batches consumed in it]
            "steps": {d.name: 0 for d in self.data},          # optimizer steps trained on each member
        }

    def start(self, engine, progress: dict[str, Any], rank: int) -> None:
        """After ``deepspeed.initialize`` (and a resume): the mixture's progress record and the
        heads' starting fingerprints (every rank calls: a collective under ZeRO-3)."""
        fingerprints = head_fingerprints(engine.module, compute=rank == 0)
        state = progress.setdefault("mixture", self.initial_state())
        state.setdefault("init_head_fingerprints", fingerprints)

    def finish(self, engine, progress: dict[str, Any], rank: int) -> None:
        progress["mixture"]["final_head_fingerprints"] = head_fingerprints(engine.module, compute=rank == 0)

    def micro_batches(self, progress: dict[str, Any], accumulation_steps: int, rng=None) -> Iterator[dict]:
        """Micro batches from step ``progress["global_step"]`` on, each tagged with its member's
        index; keeps ``progress["mixture"]`` up to date as batches are handed out. ``rng``: the
        checkpoint's RNG state, restored once the members' data positions are re-opened."""
        state = progress["mixture"]
        cursors, steps = state["cursors"], state["steps"]
        by_name = {d.name: d for d in self.data}
        iterators: dict[str, Iterator] = {}
        for name, (epoch, consumed) in cursors.items():
            if 0 < consumed < len(by_name[name].loader):  # live at the checkpoint: re-open and skip
                iterators[name] = self._open(by_name[name], epoch)
                for _ in range(consumed):
                    next(iterators[name])
        if rng is not None:
            restore_rng_state(rng)
        step = progress["global_step"]
        while True:
            index = self.sampler.member_at(step)
            name = self.sampler.names[index]
            for micro in range(accumulation_steps):
                batch = self._next(by_name[name], iterators, cursors[name])
                batch[TASK_INDEX] = torch.tensor(index)
                if micro == accumulation_steps - 1:
                    steps[name] += 1
                yield batch
            step += 1

    @staticmethod
    def _open(data: MemberData, epoch: int) -> Iterator:
        data.sampler.set_epoch(epoch)
        return iter(data.loader)

    def _next(self, data: MemberData, iterators: dict[str, Iterator], cursor: list[int]) -> dict:
        """The member's next micro batch; a new epoch (new shuffle) when its data runs out,
        opened only when needed, as an uninterrupted run does."""
        if cursor[1] >= len(data.loader):
            cursor[0], cursor[1] = cursor[0] + 1, 0
            iterators.pop(data.name, None)
        if data.name not in iterators:
            iterators[data.name] = self._open(data, cursor[0])
        batch = next(iterators[data.name])
        cursor[1] += 1
        return batch


def head_fingerprints(model: MultiTaskModel, compute: bool) -> dict[str, str | None]:
    """Each member head's parameters (a collective under ZeRO-3: every rank calls it)."""
    from xit_dist.train.fingerprint import module_fingerprint

    return {name: module_fingerprint(head, compute=compute)[0] for name, head in model.heads.items()}

