"""N samples from an artifact: split into shards, shards into batches, resumable."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from fdrl_core.launch import launch_place

from .api import Sampler
from .outputs import RunFolder


@dataclass(frozen=True)
class Plan:
    n: int
    shard_size: int
    shard_index: int = 0
    shard_count: int = 1

    def shard_numbers(self) -> range:
        """The shards this process owns: shard s goes to process s mod N (a range: -n 10^9
        costs nothing until a shard is made)."""
        return range(self.shard_index, -(-self.n // self.shard_size), self.shard_count)

    def ids(self, shard: int) -> np.ndarray:
        """The global sample ids of one shard, made when that shard is."""
        return np.arange(shard * self.shard_size, min(self.n, (shard + 1) * self.shard_size), dtype=np.int64)

    def size(self, shard: int) -> int:
        return max(0, min(self.n, (shard + 1) * self.shard_size) - shard * self.shard_size)

    def owned(self) -> int:
        return sum(self.size(s) for s in self.shard_numbers())


def shard_from_env() -> tuple[int, int]:
    """(rank, world size) from torchrun or SLURM; (0, 1) when neither launched us."""
    place = launch_place(fix="unset them or give --shard I/N")
    return place.rank, place.world


def generate(sampler: Sampler, plan: Plan, folder: RunFolder, batch: int, steps: int, seed: int,
             init: np.ndarray | None = None, progress=None, keep_first: int = 0,
             classes: list[int] | None = None, log=None) -> dict:
    """Run every shard of `plan` not yet done; returns timing and the first samples made.
    A shard is written whole or not at all (a non-finite batch stops the run before it); a
    finished shard that does not hold what it should is made again, with a line to `log`."""
    if log is None:
        log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    todo = []
    for s in plan.shard_numbers():
        why = folder.damage(s, plan.ids(s)) if folder.is_done(s) else "not made"
        if why is not None and why != "not made":
            log(f"fdrl-infer: shard {s} in the run folder is damaged ({why}): making it again")
        if why is not None:
            todo.append(s)
    skipped = len(plan.shard_numbers()) - len(todo)
    made, seconds, first = 0, 0.0, []
    for shard in todo:
        ids, parts = plan.ids(shard), []
        t0 = time.perf_counter()
        for chunk, x in sampler.iter_batches(ids=ids, seed=seed, batch=batch, steps=steps, classes=classes, init=init):
            seconds += time.perf_counter() - t0
            parts.append(x)
            made += len(chunk)
            if progress is not None:
                progress(len(chunk), made / seconds if seconds > 0 else 0.0)
            t0 = time.perf_counter()
        x = np.concatenate(parts)
        folder.write_shard(shard, ids, x, sampler.artifact.value_range)
        if sum(len(f) for f in first) < keep_first:
            first.append(x[:keep_first])
    return {"made": made, "seconds": seconds, "shards_done": len(todo), "shards_skipped": skipped,
            "first": np.concatenate(first)[:keep_first] if first else None}
