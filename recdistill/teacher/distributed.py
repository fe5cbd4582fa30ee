"""TorchRec distribution: process group, sharding plan, ``DistributedModelParallel``, optimisers,
train pipeline.

Training always runs through ``DistributedModelParallel`` (DMP), also in a single process
(world size 1): DMP swaps the ``EmbeddingBagCollection`` for fused FBGEMM table-batched kernels,
which train faster than the unsharded collection (``benchmarks/results/teacher_speed.json``).
The tables arrive on the ``meta`` device; DMP allocates each rank's shards and
:func:`shard_model` fills every shard with its rows and columns of the table
(:class:`recdistill.modules.sparse.TableInit`), so a rank holds only its shards and every world
size starts from the weights of the unsharded model. Steps run through TorchRec's
``TrainPipelineSparseDist`` (:func:`train_pipeline`).

Traps handled here (``docs/stack.md``):
  * the sparse optimiser is set explicitly with ``apply_optimizer_in_backward``; without it the
    planner still picks the fused kernel and tables train with FBGEMM's default SGD at lr 0.01;
  * row-wise sharding is offered only for CUDA by TorchRec's sharder; :class:`CpuRowWiseSharder`
    adds it for CPU.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torchrec.datasets.utils import Batch
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist
from torchrec.distributed.types import ShardingEnv, ShardingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from recdistill.config.teacher import TeacherConfig
from recdistill.errors import ConfigError
from recdistill.modules.sparse import TableInit


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


def table_inits(model: nn.Module) -> dict[str, TableInit]:
    """``state_dict`` key of every table -> its :class:`TableInit` (the ``init_fn`` of its config)."""
    return {
        f"{path}.embedding_bags.{c.name}.weight": c.init_fn
        for path, m in model.named_modules()
        if isinstance(m, EmbeddingBagCollection)
        for c in m.embedding_bag_configs()
        if isinstance(c.init_fn, TableInit)
    }


def shard_model(model: nn.Module, cfg: TeacherConfig, ctx: DistContext) -> DistributedModelParallel:
    """Shard ``model``'s embedding tables over the ranks.

    Build ``model`` with its tables on the ``meta`` device (``build_teacher(...,
    table_device="meta")``): DMP allocates only this rank's shards, and each is filled here with
    its rows and columns of the unsharded table (:class:`TableInit` draws only the blocks a shard
    overlaps). TorchRec's own ``init_fn`` call on a shard does not say where the shard starts,
    so it cannot do this. Tables already on the CPU work too (at the cost of a full copy) and
    end up the same. Every rank must pass an identically built ``model`` (same config and seed).
    """
    if cfg.sparse_optimizer == "adam" and ctx.device.type == "cpu":
        raise ConfigError(
            "teacher.sparse_optimizer 'adam' needs a GPU: FBGEMM's CPU kernels train tables with "
            "rowwise_adagrad, adagrad or sgd"
        )
    inits = table_inits(model)
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
    state = dmp.state_dict()  # ShardedTensors whose local shards are views of this rank's kernels' weights
    for key, init in inits.items():
        init(state[key])
    return dmp


def train_pipeline(
    dmp: DistributedModelParallel, optimizer: torch.optim.Optimizer, device: torch.device
) -> TrainPipelineSparseDist[Batch, Any]:
    """TorchRec's ``TrainPipelineSparseDist`` over ``dmp``: ``progress(batches)`` runs one step
    (zero_grad, forward, backward, optimiser step) while the next batch's sparse input
    distribution (``input_dist``) is already started, and the one after is being copied to the
    device (on GPU: on their own CUDA streams). On CPU the same calls run in order on one stream;
    batch preparation overlaps through the prefetching batch stream
    (:class:`recdistill.teacher.batches.BatchStream`). The model's order of updates is unchanged:
    every batch is looked up after the previous step's update. ``detach()`` it before calling
    ``dmp`` directly (validation).
    """
    return TrainPipelineSparseDist(dmp, optimizer, device, execute_all_batches=True)


def sharding_summary(dmp: DistributedModelParallel) -> dict[str, str]:
    """``table -> sharding type`` of every sharded table (for logs and tests)."""
    out: dict[str, str] = {}
    for module_path, module_plan in dmp.plan.plan.items():
        for table, spec in module_plan.items():
            out[f"{module_path}.{table}"] = str(spec.sharding_type)
    return out


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
