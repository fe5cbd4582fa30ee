"""TorchRec distribution: process group, sharding plan, ``DistributedModelParallel``, optimisers.

Training always runs through ``DistributedModelParallel`` (DMP), also in a single process
(world size 1): DMP swaps the ``EmbeddingBagCollection`` for fused FBGEMM table-batched kernels,
which train faster than the unsharded collection (see ``benchmarks`` numbers in the report).

Traps handled here (``docs/stack.md``):
  * the sparse optimiser is set explicitly with ``apply_optimizer_in_backward``; without it the
    planner still picks the fused kernel and tables train with FBGEMM's default SGD at lr 0.01;
  * row-wise sharding is offered only for CUDA by TorchRec's sharder; :class:`CpuRowWiseSharder`
    adds it for CPU.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.types import ShardingEnv, ShardingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from recdistill.config.teacher import TeacherConfig
from recdistill.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank, world size, device and backend."""

    rank: int
    world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        dist.barrier()


@contextmanager
def distributed_context() -> Iterator[DistContext]:
    """Join the process group ``torchrun`` describes, or make a one-process group.

    Uses NCCL when CUDA is available, gloo otherwise. An already initialised group is reused and
    left alone; a group made here is destroyed on exit.
    """
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    owns = False
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if not dist.is_initialized():
        owns = True
        if "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ:
            dist.init_process_group(backend=backend)
        else:  # one process: a file store, no port to open
            tmp = tempfile.TemporaryDirectory(prefix="recdistill-pg-")
            store = dist.FileStore(str(Path(tmp.name) / "store"), 1)
            dist.init_process_group(backend=backend, store=store, rank=0, world_size=1)
    rank, world = dist.get_rank(), dist.get_world_size()
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", rank % max(1, torch.cuda.device_count())))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    try:
        yield DistContext(rank=rank, world_size=world, device=device, backend=dist.get_backend())
    finally:
        if owns:
            dist.destroy_process_group()
        if tmp is not None:
            tmp.cleanup()


class CpuRowWiseSharder(EmbeddingBagCollectionSharder):
    """TorchRec's EBC sharder, plus row-wise and table-row-wise sharding on CPU (gloo)."""

    def sharding_types(self, compute_device_type: str) -> list[str]:
        types: list[str] = list(super().sharding_types(compute_device_type))
        if compute_device_type == "cpu":
            for t in (ShardingType.ROW_WISE.value, ShardingType.TABLE_ROW_WISE.value):
                if t not in types:
                    types.append(t)
        return types


def sparse_optimizer(cfg: TeacherConfig) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    """The optimiser class and arguments the fused embedding kernels run in backward."""
    lr = cfg.lr_sparse
    if cfg.sparse_optimizer == "rowwise_adagrad":
        return RowWiseAdagrad, {"lr": lr, "eps": 1e-8}
    if cfg.sparse_optimizer == "adagrad":
        return torch.optim.Adagrad, {"lr": lr, "eps": 1e-8}
    if cfg.sparse_optimizer == "adam":
        return torch.optim.Adam, {"lr": lr}
    return torch.optim.SGD, {"lr": lr}


def embedding_collections(model: nn.Module) -> list[EmbeddingBagCollection]:
    return [m for m in model.modules() if isinstance(m, EmbeddingBagCollection)]


def shard_model(model: nn.Module, cfg: TeacherConfig, ctx: DistContext) -> DistributedModelParallel:
    """Shard ``model``'s embedding tables over the ranks and copy its initial weights in.

    Every rank must pass an identically initialised ``model`` (build it from the same seed):
    the sharded tables receive exactly those weights, so training starts from the same point
    whatever the world size.
    """
    if cfg.sparse_optimizer == "adam" and ctx.device.type == "cpu":
        raise ConfigError(
            "teacher.sparse_optimizer 'adam' needs a GPU: FBGEMM's CPU kernels train tables with "
            "rowwise_adagrad, adagrad or sgd"
        )
    full_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt_cls, opt_kwargs = sparse_optimizer(cfg)
    for ebc in embedding_collections(model):
        apply_optimizer_in_backward(opt_cls, ebc.parameters(), opt_kwargs)
    constraints: dict[str, ParameterConstraints] | None = None
    if cfg.sharding != "auto":
        constraints = {
            t.name: ParameterConstraints(sharding_types=[cfg.sharding])
            for ebc in embedding_collections(model)
            for t in ebc.embedding_bag_configs()
        }
    topology = Topology(world_size=ctx.world_size, compute_device=ctx.device.type)
    planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints)
    sharders = [CpuRowWiseSharder()]
    pg = dist.GroupMember.WORLD
    assert pg is not None
    plan = planner.collective_plan(model, sharders, pg)
    dmp = DistributedModelParallel(
        module=model,
        env=ShardingEnv.from_process_group(pg),
        device=ctx.device,
        plan=plan,
        sharders=sharders,
    )
    load_full_state(dmp, full_state)
    return dmp


def sharding_summary(dmp: DistributedModelParallel) -> dict[str, str]:
    """``table -> sharding type`` of every sharded table (for logs and tests)."""
    out: dict[str, str] = {}
    for module_path, module_plan in dmp.plan.plan.items():
        for table, spec in module_plan.items():
            out[f"{module_path}.{table}"] = str(spec.sharding_type)
    return out


def load_full_state(dmp: nn.Module, full_state: Mapping[str, torch.Tensor]) -> None:
    """Copy unsharded tensors (``name -> full tensor``) into ``dmp``'s shards, in place."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    target = dmp.state_dict()
    missing = sorted(set(target) - set(full_state))
    if missing:
        raise KeyError(f"unsharded state lacks {missing[:5]}")
    with torch.no_grad():
        for name, t in target.items():
            src = full_state[name]
            if isinstance(t, ShardedTensor):
                for shard in t.local_shards():
                    offs = shard.metadata.shard_offsets
                    sizes = shard.metadata.shard_sizes
                    idx = tuple(slice(o, o + s) for o, s in zip(offs, sizes, strict=True))
                    shard.tensor.copy_(src[idx])
            elif isinstance(t, torch.Tensor):
                t.copy_(src)


def make_optimizer(dmp: DistributedModelParallel, cfg: TeacherConfig) -> CombinedOptimizer:
    """Fused sparse optimiser (inside DMP) + Adam(W) over every dense parameter, as one optimiser."""
    dense_params = dict(in_backward_optimizer_filter(dmp.named_parameters()))

    def adam(params: Any) -> torch.optim.Optimizer:
        # fused=True: one kernel for all parameters, ~7x faster than the per-tensor loop on CPU
        if cfg.weight_decay > 0:
            return torch.optim.AdamW(params, lr=cfg.lr_dense, weight_decay=cfg.weight_decay, fused=True)
        return torch.optim.Adam(params, lr=cfg.lr_dense, fused=True)

    dense = KeyedOptimizerWrapper(dense_params, adam)
    return CombinedOptimizer([("sparse", dmp.fused_optimizer), ("dense", dense)])


def set_learning_rates(opt: CombinedOptimizer, cfg: TeacherConfig, factor: float) -> None:
    """Scale both learning rates by ``factor`` (the fused kernels read it on the next step)."""
    for name, sub in opt.optimizers:
        base = cfg.lr_sparse if name == "sparse" else cfg.lr_dense
        for group in sub.param_groups:
            group["lr"] = base * factor
