"""N samples from an artifact: split into shards, shards into batches, resumable."""
from __future__ import annotations

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

    def shards(self) -> list[tuple[int, np.ndarray]]:
        """(shard number, global ids) owned by this process: shard s goes to process s mod N."""
        total = -(-self.n // self.shard_size)
        return [(s, np.arange(s * self.shard_size, min(self.n, (s + 1) * self.shard_size), dtype=np.int64))
                for s in range(total) if s % self.shard_count == self.shard_index]


def shard_from_env() -> tuple[int, int]:
    """(rank, world size) from torchrun or SLURM; (0, 1) when neither launched us."""
    place = launch_place(fix="unset them or give --shard I/N")
    return place.rank, place.world


def generate(sampler: Sampler, plan: Plan, folder: RunFolder, batch: int, steps: int, seed: int,
             init: np.ndarray | None = None, progress=None, keep_first: int = 0,
             classes: list[int] | None = None) -> dict:
    """Run every shard of `plan` not yet done; returns timing and the first samples made.
    A shard is written whole or not at all (a non-finite batch stops the run before it)."""
    todo = [(s, ids) for s, ids in plan.shards() if not folder.is_done(s)]
    skipped = len(plan.shards()) - len(todo)
    made, seconds, first = 0, 0.0, []
    for shard, ids in todo:
        parts = []
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
