"""This process's place among the processes of a run."""

from __future__ import annotations

import os


def rank_world(launcher_env: bool = True) -> tuple[int, int]:
    """(global rank, world size): torch.distributed's once its process group is up, else (with
    ``launcher_env``) what launchers set before it is (torchrun/Lightning: ``RANK``/``WORLD_SIZE``,
    ``LOCAL_RANK``; SLURM tasks: ``SLURM_PROCID``/``SLURM_NTASKS``); (0, 1) when launched alone.
    Data sharding passes ``launcher_env=False``: only a process group shares the data."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if not launcher_env:
        return 0, 1
    rank = next((int(os.environ[n]) for n in ("RANK", "LOCAL_RANK", "SLURM_PROCID")
                 if os.environ.get(n, "").isdigit()), 0)
    world = next((int(os.environ[n]) for n in ("WORLD_SIZE", "SLURM_NTASKS") if os.environ.get(n, "").isdigit()), 1)
    return rank, max(world, rank + 1)
