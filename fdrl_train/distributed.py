"""Where a run executes: device, and rank / world size under torchrun (torch.distributed).

Every rank draws the *global* batch's data, prior samples and flow noise from the same
generator and keeps its own slice, so a run on N processes takes the same steps as one
process with the same global batch (up to the order of floating-point sums), and resumes
on any world size. Gradients are averaged by DistributedDataParallel; rank 0 writes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fdrl_core.launch import LAUNCHERS, launch_place

from .errors import TrainingError


@dataclass(frozen=True)
class Placement:
    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, global_batch: int) -> slice:
        per = global_batch // self.world
        return slice(self.rank * per, (self.rank + 1) * per)


def setup(device: str, global_batch: int) -> Placement:
    # torchrun's variables only: one fdrl-train inside a SLURM allocation stays one process
    place = launch_place(fix="launch with torchrun, or unset them for one process", launchers=LAUNCHERS[:1])
    world, rank, local = place.world, place.rank, place.local_rank
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError("device 'cuda' asked for, but PyTorch sees no GPU: use --set device=cpu")
        dev = torch.device("cuda", local if world > 1 else (torch.device(device).index or 0))
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1:
        if global_batch % world:
            raise TrainingError(f"batch_size {global_batch} does not split over {world} processes: "
                                f"use a multiple of {world}")
        import os

        import torch.distributed as dist
        if not dist.is_initialized():
            absent = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
            if absent:  # torch's env:// rendezvous would raise a ValueError traceback
                raise TrainingError(f"RANK/WORLD_SIZE say {world} processes but {', '.join(absent)} "
                                    "is not set: launch with torchrun, or unset RANK and WORLD_SIZE for one process")
            try:
                dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
            except (RuntimeError, ValueError) as e:  # an unreachable MASTER_ADDR, a port in use, a timeout
                raise TrainingError(f"the {world} processes could not meet at "
                                    f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}: "
                                    f"{str(e).strip().splitlines()[0][:160]}") from None
    return Placement(dev, rank, world)


def all_mean(place: Placement, values: list[float]) -> list[float]:
    if place.world == 1:
        return values
    import torch.distributed as dist
    t = torch.tensor(values, dtype=torch.float64, device=place.device)
    dist.all_reduce(t)
    return (t / place.world).tolist()


def any_rank(place: Placement, flag: bool) -> bool:
    if place.world == 1:
        return flag
    import torch.distributed as dist
    t = torch.tensor([1.0 if flag else 0.0], device=place.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def from_main(place: Placement, make):
    """make() on rank 0, its result sent to every rank (e.g. the fitted prior)."""
    if place.world == 1:
        return make()
    import torch.distributed as dist
    box = [make() if place.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def max_weight_spread(place: Placement, model: torch.nn.Module) -> float:
    """Largest |w - w_rank0| over all weights and ranks: 0 when the ranks are in step."""
    if place.world == 1:
        return 0.0
    import torch.distributed as dist
    spread = torch.zeros((), device=place.device, dtype=torch.float64)
    for v in model.state_dict().values():
        ref = v.detach().clone()
        dist.broadcast(ref, src=0)
        spread = torch.maximum(spread, (v.detach() - ref).abs().max().double())
    dist.all_reduce(spread, op=dist.ReduceOp.MAX)
    return float(spread)


def finish(place: Placement) -> None:
    """End the process group together: a rank that exits while another still holds its
    connections can make that one abort (SIGABRT in gloo's teardown)."""
    if place.world == 1:
        return
    import torch.distributed as dist
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
