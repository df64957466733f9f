"""The Euler-Maruyama flow x <- x - eta * drift(x) + nu * xi (shared/DESIGN.md §1, eq. 9)."""
from __future__ import annotations

import torch

from fdrl_core.calls import CompiledOrPlain, side_by_side
from fdrl_core.flow import euler_maruyama as flow  # noqa: F401  (the update, written once)

from .drift import DriftGraph


class GraphFlow:
    """The training-time flow over a DriftGraph: no autograd tape, no gradient to theta.

    Steps run in chunks of `chunk`; each chunk's noise is drawn at once from the caller's
    generator, so every configuration below sees the same numbers.
    - compile: a chunk is one torch.compile'd call. On small models per-op overhead is
      what costs (shared/DESIGN.md §5) and fusing a chunk removes most of it.
    - workers: the batch is split across this many threads, each running torch on one
      core; for convolutions on a few cores that beats one batch on all of them
      (MNIST ResNet, batch 64, 2 cores: see benchmarks/NOTES.md).
    - channels_last: NHWC activations and weights, oneDNN's preferred layout on CPU.
    - cuda_graphs: on a GPU a chunk is captured once per batch shape and replayed; the
      captured weights are static buffers the current weights are copied into, so the
      graph stays valid while the optimiser changes them.
    """

    def __init__(self, graph: DriftGraph, eta: float, nu: float, compile: bool = False, chunk: int = 10,
                 workers: int = 1, channels_last: bool = False, cuda_graphs: bool = False):
        self.graph, self.eta, self.nu, self.chunk = graph, float(eta), float(nu), chunk
        self.workers, self.channels_last, self.cuda_graphs = max(1, workers), channels_last, cuda_graphs
        self._run_chunk = (CompiledOrPlain(torch.compile(self._chunk, dynamic=False), self._chunk, "compile_flow")
                           if compile else self._chunk)
        self._pool = None
        self._graphs: dict[tuple, tuple] = {}

    def _chunk(self, weights, x, xi):
        return flow(lambda x_: self.graph(weights, x_)[0], x, xi.shape[0], self.eta, self.nu, lambda k: xi[k])

    def _graph_chunk(self, weights, x, xi):
        key = (tuple(x.shape), x.dtype, xi.shape[0], torch.is_autocast_enabled())
        if key not in self._graphs:
            w_buf, x_buf, xi_buf = [w.clone() for w in weights], x.clone(), xi.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm up outside the capture
                self._chunk(w_buf, x_buf.clone(), xi_buf)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self._chunk(w_buf, x_buf, xi_buf)
            self._graphs[key] = (graph, w_buf, x_buf, xi_buf, out)
        graph, w_buf, x_buf, xi_buf, out = self._graphs[key]
        for buf, w in zip(w_buf, weights):
            buf.copy_(w)
        x_buf.copy_(x)
        xi_buf.copy_(xi)
        graph.replay()
        return out.clone()  # the next replay overwrites `out`

    def _parallel_chunk(self, weights, x, xi):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(self.workers - 1)
        parts = list(zip(x.tensor_split(self.workers), xi.tensor_split(self.workers, dim=1)))
        return torch.cat(side_by_side(self._pool, lambda _, p: self._run_chunk(weights, *p), parts))

    @torch.no_grad()
    def __call__(self, weights: list[torch.Tensor], x: torch.Tensor, steps: int, g: torch.Generator,
                 rows: slice | None = None, total: int | None = None):
        """`steps` steps from x. With rows/total, x holds rows `rows` of a batch of `total`
        and takes those rows of that batch's noise (distributed training, distributed.py)."""
        layout = torch.channels_last if self.channels_last and x.dim() == 4 else None
        if layout is not None:
            weights = [w.contiguous(memory_format=layout) if w.dim() == 4 else w for w in weights]
            x = x.contiguous(memory_format=layout)
        parallel = self.workers > 1 and x.shape[0] >= 2 * self.workers
        threads = torch.get_num_threads()
        if parallel:
            torch.set_num_threads(1)
        try:
            done = 0
            while done < steps:
                n = min(self.chunk, steps - done)
                # A generator on the GPU draws there; the host's draws are copied up.
                if rows is None:
                    xi = torch.randn((n,) + tuple(x.shape), generator=g, device=g.device)
                else:
                    xi = torch.randn((n, total) + tuple(x.shape[1:]), generator=g, device=g.device)[:, rows]
                xi = xi.to(device=x.device, dtype=x.dtype)
                if self.cuda_graphs and x.is_cuda and n == self.chunk:
                    x = self._graph_chunk(weights, x, xi)
                else:
                    x = (self._parallel_chunk if parallel else self._run_chunk)(weights, x, xi)
                done += n
        finally:
            if parallel:
                torch.set_num_threads(threads)
        return x.contiguous()
