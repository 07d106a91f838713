"""Model selection on English dev, as the paper's recipe does (jiant's XTREME scripts: validate
every 1000 steps on 500 English dev examples, stop after 30 validations without gain, reload
the best weights). Only English is looked at, which keeps the evaluation zero-shot.

The best weights are kept as a DeepSpeed checkpoint in ``<phase_dir>/best`` (shared storage on
a multi-node cluster), written by every rank, so they survive an interrupted phase too. With
``output_dir`` in a bucket, every node saves its ranks' files into its mirror, the first rank of
each node lists them in a manifest of that node's and uploads them to ``<phase>/best-<step>/``,
then rank 0 points ``<phase>/best.json`` at it (last: a cut upload leaves the previous best in
force) and removes the previous one; a restore downloads the pointed one once per node.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from xit_dist.evaluate.job import EvalJob
from xit_dist.tasks.languages import SOURCE_LANGUAGE
from xit_dist.train.checkpoint import CHECKPOINT_TAG
from xit_dist.train.checkpoint_manifest import find_damage, write_manifest
from xit_dist.tracking import object_files
from xit_dist.train.job import PhaseJob

BEST_POINTER = "best.json"  # in a bucket: which best-<step>/ holds the best weights


class DevValidator:
    def __init__(self, job: PhaseJob, engine, tokenizer, progress: dict[str, Any], rank: int, world_size: int):
        self.every = job.training.eval_every_n_steps
        self.patience = job.training.early_stopping_patience
        self.engine, self.tokenizer, self.progress = engine, tokenizer, progress
        self.rank, self.world_size = rank, world_size
        self.phase_id = job.phase_id
        self.best_dir = object_files.local_path(job.phase_dir) / "best"
        self.bucket = job.phase_dir if object_files.is_object_store_uri(job.phase_dir) else None
        self.eval_job = EvalJob(
            phase_id=job.phase_id,
            task=job.task,
            model_dir=None,
            data_dir=job.data_dir,
            data_revision=job.data_revision,
            split="validation",
            languages=[SOURCE_LANGUAGE],
            batch_size=64,
            options=job.options,
            max_examples_per_language=job.training.eval_examples,
            bf16=job.bf16,
            cpus_per_worker=job.cpus_per_worker,
        )
        progress.setdefault("validation", [])
        progress.setdefault("bad_validations", 0)

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def validate(self, step: int) -> dict[str, float]:
        from xit_dist.evaluate.zero_shot import evaluate_languages

        evaluation = evaluate_languages(self.engine.module, self.tokenizer, self.eval_job, self.rank, self.world_size, self.engine.device, verbose=False,
                                        with_datasets=False)
        scores = evaluation["results"].get(SOURCE_LANGUAGE, {})
        metric, score = _broadcast(next(iter(scores.items()), None))
        self.progress["validation"].append([step, score])
        self.progress["dev_metric"] = metric
        if score > self.progress.get("best_score", float("-inf")):
            self.progress.update(best_step=step, best_score=score, bad_validations=0)
            self._save_best()
        else:
            self.progress["bad_validations"] += 1
        if self.rank == 0:
            print(
                f"[{self.phase_id}] step {step} English dev {metric} {score:.2f} "
                f"(best {self.progress['best_score']:.2f} at step {self.progress['best_step']})",
                flush=True,
            )
        return {f"dev.{metric}": score}

    def kept_metrics(self) -> dict[str, float]:
        """``dev.<metric>`` of the weights the phase keeps (the best validation's), for its final report."""
        if "best_score" not in self.progress or "dev_metric" not in self.progress:
            return {}
        return {f"dev.{self.progress['dev_metric']}": self.progress["best_score"]}

    def should_stop(self) -> bool:
        return bool(self.patience) and self.progress["bad_validations"] >= self.patience

    def _save_best(self) -> None:
        if self.bucket is not None:
            self._save_best_to_bucket()
            return
        partial = self.best_dir.with_name("best.partial")
        if self.rank == 0:
            shutil.rmtree(partial, ignore_errors=True)
        _barrier()
        self.engine.save_checkpoint(str(partial), tag=CHECKPOINT_TAG)
        _barrier()
        if self.rank == 0:
            # One manifest for the files of every rank, written once all are there (the ranks
            # share this directory, so per-rank listings would race with each other's writes).
            write_manifest(partial, rank=0, world_size=1)
            shutil.rmtree(self.best_dir, ignore_errors=True)
            partial.rename(self.best_dir)
        _barrier()

    def _first_of_node(self) -> tuple[bool, int, int]:
        """Whether this rank is its node's first, the node's index and the number of nodes."""
        nodes = self.progress.get("worker_nodes") or [None] * (self.rank + 1)
        order = list(dict.fromkeys(nodes))
        return nodes.index(nodes[self.rank]) == self.rank, order.index(nodes[self.rank]), len(order)

    def _save_best_to_bucket(self) -> None:
        name = f"best-{self.progress['global_step']:08d}"
        local = object_files.local_path(f"{self.bucket}/{name}")
        first, node, nodes = self._first_of_node()
        if first:
            object_files.forget_copy(local)
        _barrier()
        self.engine.save_checkpoint(str(local), tag=CHECKPOINT_TAG)
        _barrier()
        if first:
            write_manifest(local, rank=node, world_size=nodes)
            object_files.upload_tree(local, f"{self.bucket}/{name}")
            if nodes == 1:  # this node holds every file: a restore here needs no download
                object_files.mark_copied(local)
        _barrier()
        if self.rank == 0:
            previous = self._best_pointer()
            object_files.write_text(f"{self.bucket}/{BEST_POINTER}", json.dumps({"dir": name, "step": self.progress["global_step"]}))
            if previous and previous["dir"] != name:
                object_files.delete_tree(f"{self.bucket}/{previous['dir']}")
        if first:  # this node's copies of earlier best weights (and their markers)
            for old in local.parent.glob("best-*"):
                if not old.name.startswith(name):
                    if old.is_dir():
                        shutil.rmtree(old, ignore_errors=True)
                    else:
                        old.unlink(missing_ok=True)
        _barrier()

    def _best_pointer(self) -> dict | None:
        text = object_files.read_text_if_any(f"{self.bucket}/{BEST_POINTER}")
        return json.loads(text) if text else None

    def _best_directory(self) -> Path | None:
        """Where the best weights are on this node (downloaded once per node from a bucket);
        None when the bucket holds none for the best step."""
        if self.bucket is None:
            return self.best_dir
        pointer = _broadcast(self._best_pointer() if self.rank == 0 else None)
        if pointer is None or pointer.get("step") != self.progress["best_step"]:
            return None
        return Path(object_files.local_copy(f"{self.bucket}/{pointer['dir']}"))

    def restore_best(self) -> None:
        """Load the best weights into the engine (all ranks) unless the last step was the best."""
        best = self.progress.get("best_step")
        if best is None or best == self.progress["global_step"]:
            return
        best_dir = self._best_directory()
        if best_dir is None:
            problem = f"{BEST_POINTER}: names no weights of step {best}"
        else:
            problem = find_damage(best_dir) if self.rank == 0 else None
        problem = _broadcast(problem)
        if problem is not None:
            # The last step's weights are intact: keep them, and say so, rather than load the
            # damaged ones (DeepSpeed would load overwritten bytes without a word).
            self.progress["best_damaged"] = problem
            if self.rank == 0:
                print(f"[{self.phase_id}] warning: {best_dir or self.bucket}/{problem}; the best English-dev weights "
                      f"(step {best}) are damaged: keeping the last step's ({self.progress['global_step']})", flush=True)
            return
        self.engine.load_checkpoint(str(best_dir), tag=CHECKPOINT_TAG, load_optimizer_states=True, load_lr_scheduler_states=True)
        self.progress["restored_best_step"] = best
        if self.rank == 0:
            print(f"[{self.phase_id}] keeping the best English-dev weights, from step {best}", flush=True)


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _broadcast(value):
    """Rank 0's value on every rank: every rank must take the same stop/save decisions."""
    if not torch.distributed.is_initialized():
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
