"""How a call runs: on parts of a batch side by side, or compiled with a plain fallback.

Torch-free (the callables bring their own arrays), because training's flow and two of the
runtime's backends run their steps this way.
"""
from __future__ import annotations

import warnings


def side_by_side(pool, fn, parts: list) -> list:
    """fn(i, part) for each part: parts[1:] on the pool's threads, parts[0] on this one;
    results in order. pool None (one part): a plain call."""
    if pool is None or len(parts) == 1:
        return [fn(i, p) for i, p in enumerate(parts)]
    futures = [pool.submit(fn, i, p) for i, p in enumerate(parts[1:], 1)]
    first = fn(0, parts[0])
    return [first] + [f.result() for f in futures]


class CompiledOrPlain:
    """`compiled` until its first call fails, then `plain` for good, said once as a warning.

    torch.compile needs a C++ compiler on the CPU and raises many kinds of error where it
    cannot build (no compiler, an op it does not support); a run should go on uncompiled,
    not stop. Make the first call from one thread: that call is where compilation happens."""

    def __init__(self, compiled, plain, what: str):
        self.compiled, self.plain, self.what = compiled, plain, what
        self.call = self._first

    def _first(self, *args):
        try:
            out = self.compiled(*args)
            self.call = self.compiled
        except Exception as e:  # noqa: BLE001  (inductor's errors have no common base)
            warnings.warn(f"{self.what}: torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
                          "running uncompiled", RuntimeWarning, stacklevel=3)
            self.call = self.plain
            out = self.plain(*args)
        return out

    @property
    def untried(self) -> bool:
        """Not called yet: the next call compiles."""
        return self.call == self._first

    @property
    def fell_back(self) -> bool:
        return self.call is self.plain

    def __call__(self, *args):
        return self.call(*args)
