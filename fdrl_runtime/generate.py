"""N samples from an artifact: split into shards, shards into batches, resumable."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fdrl_core.errors import FdrlError
from fdrl_core.launch import launch_place

from .artifact import Artifact
from .loop import sample_batch
from .outputs import RunFolder


class NonFiniteSamples(FdrlError, RuntimeError):
    """The flow produced NaN or inf; nothing of that shard is written."""


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


def labels_for(ids: np.ndarray, classes: list[int]) -> np.ndarray:
    """Balanced classes: sample i asks for classes[i mod len(classes)], whatever the batching."""
    return np.asarray(classes, dtype=np.int64)[ids % len(classes)]


def generate(artifact: Artifact, backend, plan: Plan, folder: RunFolder, batch: int, steps: int, seed: int,
             init: np.ndarray | None = None, progress=None, keep_first: int = 0,
             classes: list[int] | None = None) -> dict:
    """Run every shard of `plan` not yet done; returns timing and the first samples made."""
    todo = [(s, ids) for s, ids in plan.shards() if not folder.is_done(s)]
    skipped = len(plan.shards()) - len(todo)
    made, seconds, first = 0, 0.0, []
    for shard, ids in todo:
        parts = []
        for start in range(0, len(ids), batch):
            chunk = ids[start:start + batch]
            t0 = time.perf_counter()
            x = sample_batch(backend, artifact, chunk, seed, steps, None if init is None else init[chunk],
                             None if classes is None else labels_for(chunk, classes))
            seconds += time.perf_counter() - t0
            parts.append(x)
            made += len(chunk)
            if progress is not None:
                progress(len(chunk), made / seconds if seconds > 0 else 0.0)
        x = np.concatenate(parts)
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():  # NaN would be written as black pixels or NaN points, as if samples
            where = "--init holds non-finite values" if init is not None and not np.isfinite(init[ids]).all() else \
                "the drift diverges (an export with --no-check, eta too large, or phi too large for a conditional model)"
            raise NonFiniteSamples(f"{int(bad.sum())} of {len(x)} samples in shard {shard} are not finite; "
                                   f"nothing was written for it: {where}")
        folder.write_shard(shard, ids, x, artifact.value_range)
        if sum(len(f) for f in first) < keep_first:
            first.append(x[:keep_first])
    return {"made": made, "seconds": seconds, "shards_done": len(todo), "shards_skipped": skipped,
            "first": np.concatenate(first)[:keep_first] if first else None}
