"""Where this process sits in a multi-process launch (torchrun or SLURM), read once.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; SLURM sets SLURM_PROCID, SLURM_NTASKS
and SLURM_LOCALID. fdrl-train splits a batch by them and fdrl-infer picks its shard by
them, so both read them here, with one rule: integers, 0 <= rank < world, or a one-line
error naming the variables.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import FdrlError

LAUNCHERS = (("RANK", "WORLD_SIZE", "LOCAL_RANK"), ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"))


class LaunchError(FdrlError, ValueError):
    """The launcher's environment variables are not a valid rank and world size."""


@dataclass(frozen=True)
class LaunchPlace:
    rank: int = 0
    world: int = 1
    local_rank: int = 0


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def launch_place(environ=None, fix: str = "unset them", launchers=LAUNCHERS) -> LaunchPlace:
    """The (rank, world, local rank) a launcher gave this process; (0, 1, 0) when none did."""
    env = os.environ if environ is None else environ
    for rank_key, world_key, local_key in launchers:
        if rank_key in env and world_key in env:
            text = f"{rank_key}={env[rank_key]!r} {world_key}={env[world_key]!r}"
            try:
                rank, world = int(env[rank_key]), int(env[world_key])
                local = int(env.get(local_key, "0"))
            except ValueError:
                raise LaunchError(f"{text}: not integers; {fix}") from None
            if world <= 0 or not 0 <= rank < world or local < 0:
                raise LaunchError(f"{text}: need 0 <= {rank_key} < {world_key}; {fix}")
            return LaunchPlace(rank, world, local)
    return LaunchPlace()


def check_device(device) -> str:
    """'cpu', 'cuda' or 'cuda:N', or a UsageError saying so: every command's --device."""
    import re

    from .errors import UsageError
    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(device)):
        raise UsageError(f"--device {str(device)[:80]}: use cpu, cuda or cuda:N")
    return str(device)


def check_threads(threads, name: str = "--threads") -> int:
    """0 (the program's choice) up to the cores this process may use, or a UsageError: more
    threads than cores only cost memory (and, asked for by the thousand, crash the process)."""
    from .errors import UsageError, short
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise UsageError(f"{name} {short(threads, 80)}: must be an integer >= 0 (0 picks for you)")
    if threads > available_cores():
        raise UsageError(f"{name} {threads}: this machine lets this process use {available_cores()} cores; "
                         "give at most that (0 picks for you)")
    return threads


def check_count(value, name: str, minimum: int | None = 1) -> int:
    """An integer argument (not a bool, float or string) of at least `minimum` (None: any), or a UsageError."""
    from .errors import UsageError, short
    try:
        import numpy as np
        integer = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    except ImportError:  # pragma: no cover - numpy is a dependency of every package here
        integer = isinstance(value, int) and not isinstance(value, bool)
    if not integer or (minimum is not None and value < minimum):
        raise UsageError(f"{name} {short(value, 80)}: must be an integer" + ("" if minimum is None else f" >= {minimum}"))
    return int(value)
