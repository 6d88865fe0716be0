"""torchrun / DDP plumbing: process group, device, synchronized batch norm.

``torchrun --nproc_per_node=N -m occ_tools.cli train ...`` (or ``torchrun ... $(which occ) train``) sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables; :func:`init_distributed` reads them
and joins the group with NCCL on GPUs and gloo on CPUs. Multi-node works the same way (torchrun's
``--nnodes``/``--rdzv-endpoint``).

Batch norm must see the whole global batch for a DDP run to follow the single-process run: on GPUs that is
``torch.nn.SyncBatchNorm``; it refuses CPU tensors, so on CPU (gloo) :class:`GlooSyncBatchNorm` does the same
with a differentiable all-reduce of the per-channel sums.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistributedContext:
    """This process' place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA (this process' local GPU) when available, else CPU; ``cuda`` fails clearly without a GPU."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda was asked for but torch sees no CUDA GPU (use device=cpu or auto)")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(preference: str = "auto") -> DistributedContext:
    """Join the torchrun process group when ``WORLD_SIZE > 1`` (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank, world, local_rank, device)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistributedContext) -> None:
    if ctx.distributed:
        dist.barrier()


def mean_over_processes(values: dict[str, float], ctx: DistributedContext) -> dict[str, float]:
    """Average a dict of floats over the processes (same keys on every rank, sorted for a fixed order)."""
    if not ctx.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    t /= ctx.world_size
    return {k: float(v) for k, v in zip(keys, t.tolist(), strict=True)}


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """Batch norm over the global batch of a CPU (gloo) DDP job; a plain :class:`nn.BatchNorm2d`/3d otherwise.

    Training forward: per-channel ``sum d``, ``sum d^2`` (``d = x - running_mean``) and counts are summed over the
    processes with the autograd-aware ``torch.distributed.nn.functional.all_reduce`` (so the backward pass is
    synchronized too), then ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the biased variance,
    and the running statistics move with the unbiased one, as :class:`nn.BatchNorm2d` does.
    Works for 4-D and 5-D inputs.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:  # noqa: A002 (torch's signature)
        if input.dim() not in (4, 5):
            raise ValueError(f"GlooSyncBatchNorm expects a 4-D or 5-D input, got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, *range(2, input.dim())]
        channels = input.shape[1]
        shape = [1, channels] + [1] * (input.dim() - 2)
        # Moments about the running mean (the same on every process), so that E[d^2] - E[d]^2 does not cancel
        # catastrophically when the mean is large compared with the spread.
        centre = (
            self.running_mean.detach().to(input.dtype) if self.running_mean is not None else input.new_zeros(channels)
        )
        shifted = input - centre.reshape(shape)
        count = torch.tensor([input.numel() / channels], dtype=input.dtype, device=input.device)
        stats = all_reduce(torch.cat([shifted.sum(dims), (shifted * shifted).sum(dims), count]))
        total = stats[-1]
        offset = stats[:channels] / total
        mean = centre + offset
        var = (stats[channels : 2 * channels] / total - offset * offset).clamp(min=0.0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 0.1
                unbiased = var * total / (total - 1).clamp(min=1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
                assert self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
        y = (input - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + self.eps)
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        return y


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every batch norm with its synchronized version (torch's on CUDA, :class:`GlooSyncBatchNorm` on CPU)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_cpu(model)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        out = GlooSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        out.load_state_dict(module.state_dict())
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out
