"""This process's place among the processes of a run."""

from __future__ import annotations

import os


def rank_world(launcher_env: bool = True) -> tuple[int, int]:
    """(global rank, world size): torch.distributed's, else (``launcher_env``) torchrun's or SLURM's variables; (0, 1)
    alone. Data sharding passes ``launcher_env=False``: only a process group shares data."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if not launcher_env:
        return 0, 1
    rank = next(
        (
            int(os.environ[n])
            for n in ("RANK", "LOCAL_RANK", "SLURM_PROCID")
            if os.environ.get(n, "").isdigit()
        ),
        0,
    )
    world = next(
        (
            int(os.environ[n])
            for n in ("WORLD_SIZE", "SLURM_NTASKS")
            if os.environ.get(n, "").isdigit()
        ),
        1,
    )
    return rank, max(world, rank + 1)
