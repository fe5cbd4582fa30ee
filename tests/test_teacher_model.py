"""Teacher blocks and model: shapes, the maths of each block, input layout and its checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from interaction_reference import old_padded_to_kjt, old_teacher_forward
from teacher_util import TINY_CFG, tiny_inputs
from torchrec import KeyedJaggedTensor

from recdistill.config.loader import from_mapping
from recdistill.config.teacher import TeacherConfig
from recdistill.data.batch import ModelBatch
from recdistill.data.preprocess import Preprocessor
from recdistill.data.schema import Schema
from recdistill.errors import ConfigError, DataError
from recdistill.models.params import count_parameters
from recdistill.models.teacher import (
    Teacher,
    TeacherEnsemble,
    TeacherInputs,
    TeacherTrainTask,
    build_teacher,
    teacher_batch,
)
from recdistill.modules.crossnet import CrossLayers
from recdistill.modules.interaction import HistoryMatch, PairwiseDots
from recdistill.modules.mlp import FeedForward
from recdistill.modules.sparse import PooledEmbeddings, SparseFeature, TableInit, padded_to_kjt, split_kjt
from recdistill.modules.towers import GroupTowers


def tiny_batch(n: int = 16, seed: int = 0) -> ModelBatch:
    rng = np.random.default_rng(seed)
    multi = np.stack([rng.integers(0, 40, size=(n, 5)), rng.integers(0, 30, size=(n, 5))], axis=1)
    multi[:, :, 3:] = 0  # padding
    multi[0] = 0  # an empty history
    return ModelBatch(
        dense=rng.normal(size=(n, 3)).astype(np.float32),
        ids=np.stack([rng.integers(0, 50, n), rng.integers(0, 40, n)], axis=1).astype(np.int64),
        multi=multi.astype(np.int64),
    )


def as_tensors(b: ModelBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.from_numpy(b.dense), torch.from_numpy(b.ids), torch.from_numpy(b.multi)


def as_inputs(b: ModelBatch) -> tuple[torch.Tensor, KeyedJaggedTensor]:
    """What the teacher's forward takes: the dense block and the KJT (built by the data path)."""
    return torch.from_numpy(b.dense), tiny_inputs().kjt(b)


def test_feed_forward_shapes_and_linear_head() -> None:
    mlp = FeedForward(6, (8, 3), final_activation=False)
    y = mlp(torch.randn(4, 6))
    assert y.shape == (4, 3)
    assert (y < 0).any()  # no ReLU on the last layer
    assert FeedForward(6, ()).out_dim == 6


def test_cross_layers_match_formula() -> None:
    torch.manual_seed(0)
    net = CrossLayers(5, num_layers=1, low_rank=2)
    x0 = torch.randn(3, 5)
    expected = x0 * net.U[0](net.V[0](x0)) + x0
    assert torch.allclose(net(x0), expected)
    full = CrossLayers(5, num_layers=2, low_rank=0)
    assert full.low_rank == 0 and full(x0).shape == (3, 5)


def test_padded_to_kjt_drops_padding_keeps_missing_row() -> None:
    ids = np.array([[0, 3], [4, 5]])
    multi = np.array([[[7, 8, 0]], [[0, 0, 0]]])
    kjt = padded_to_kjt(ids, multi, ["a", "b", "h"])
    d = kjt.to_dict()
    assert d["a"].values().tolist() == [0, 4]  # row 0 (missing) is a real lookup
    assert d["h"].lengths().tolist() == [2, 0]
    assert d["h"].values().tolist() == [7, 8]
    cand, lengths, values = split_kjt(kjt, n_categorical=2, n_multi=1, batch_size=2)
    assert cand.tolist() == ids.tolist() and lengths.tolist() == [[2, 0]] and values.tolist() == [7, 8]
    # the same KJT the model used to build inside forward
    old = old_padded_to_kjt(torch.from_numpy(ids), torch.from_numpy(multi), ["a", "b", "h"])
    b = tiny_batch(64)
    for got, want in (
        (kjt, old),
        (tiny_inputs().kjt(b), old_padded_to_kjt(*as_tensors(b)[1:], tiny_inputs().keys)),
    ):
        assert got.keys() == want.keys()
        assert torch.equal(got.values(), want.values()) and torch.equal(got.lengths(), want.lengths())


def test_pooled_embeddings_mean_pool_shared_table() -> None:
    feats = [
        SparseFeature("item", "categorical", 0, "item", 10, "item"),
        SparseFeature("hist", "multi", 0, "item", 10, "user"),
    ]
    arch = PooledEmbeddings(feats, 4)
    assert len(arch.ebc.embedding_bag_configs()) == 1  # vocab_from shares one table
    w = arch.ebc.embedding_bags["item"].weight
    out = arch(padded_to_kjt(np.array([[3]]), np.array([[[2, 5, 0]]]), arch.keys))
    assert out.shape == (1, 2, 4)
    assert torch.allclose(out[0, 0], w[3])
    assert torch.allclose(out[0, 1], (w[2] + w[5]) / 2)


def test_pooled_embeddings_return_features_in_column_order() -> None:
    # the EBC orders its output table by table: item_id (item, hist), then user (user)
    feats = [
        SparseFeature("item", "categorical", 0, "item_id", 10, "item"),
        SparseFeature("user", "categorical", 1, "user", 6, "user"),
        SparseFeature("hist", "multi", 0, "item_id", 10, "user"),
    ]
    arch = PooledEmbeddings(feats, 3)
    assert [n for c in arch.ebc.embedding_bag_configs() for n in c.feature_names] == ["item", "hist", "user"]
    kjt = padded_to_kjt(np.array([[3, 4], [5, 0]]), np.array([[[2, 0]], [[7, 8]]]), arch.keys)
    kt = arch.ebc(kjt)
    assert torch.equal(arch(kjt), torch.stack([kt["item"], kt["user"], kt["hist"]], dim=1))


def test_table_init_is_the_same_for_every_shard_and_leaves_the_global_rng_alone() -> None:
    init = TableInit(seed=3, table=1, rows=10_000, dim=6)
    torch.manual_seed(0)
    expected_next = torch.rand(3)
    torch.manual_seed(0)
    whole = init(torch.empty(10_000, 6))
    assert torch.equal(torch.rand(3), expected_next)
    bound = (1 / 10_000) ** 0.5
    assert whole.abs().max() <= bound and whole.std() > bound / 2  # TorchRec's default range
    part = torch.empty(5_000, 2)  # rows 4_000..8_999, columns 3..4: crosses two blocks of 4096 rows
    init.fill(part, row0=4_000, col0=3)
    assert torch.equal(part, whole[4_000:9_000, 3:5])
    assert not torch.equal(whole, TableInit(seed=3, table=2, rows=10_000, dim=6)(torch.empty(10_000, 6)))


def test_meta_tables_take_no_memory_and_have_the_shapes() -> None:
    model = build_teacher(tiny_inputs(), TINY_CFG, table_device="meta")
    cpu = build_teacher(tiny_inputs(), TINY_CFG)
    state, full = model.state_dict(), cpu.state_dict()
    assert list(state) == list(full)
    for k, v in state.items():
        assert v.shape == full[k].shape
        assert v.is_meta == ("embedding_bags" in k), k  # only the tables; dense layers are drawn as before
        if not v.is_meta:
            assert torch.equal(v, full[k]), k
    assert count_parameters(model) == count_parameters(cpu)


def test_towers_and_dots() -> None:
    towers = GroupTowers(
        {"user": ([0], [1]), "item": ([1], []), "context": ([], [])}, embedding_dim=4, dims=(6,)
    )
    assert towers.names == ["user", "item"]  # an empty group gets no tower
    t = towers(torch.randn(5, 2, 4), torch.randn(5, 2))
    assert t.shape == (5, 2, 6)
    dots = PairwiseDots(towers.num_towers)(t)
    assert dots.shape == (5, 1)
    assert torch.allclose(dots[:, 0], (t[:, 0] * t[:, 1]).sum(-1), atol=1e-6)


def test_history_match_counts_candidate_in_history() -> None:
    feats = [
        SparseFeature("item", "categorical", 0, "item", 10, "item"),
        SparseFeature("user", "categorical", 1, "user", 10, "user"),
        SparseFeature("hist", "multi", 0, "item", 10, "user"),
    ]
    seq = HistoryMatch.shared_tables(feats)
    assert seq.pairs == ((0, 0),)  # (hist, item): they share the item table
    ids = torch.tensor([[5, 3], [1, 3], [4, 3]])
    multi = torch.tensor([[[5, 5, 2, 0]], [[1, 1, 0, 0]], [[0, 0, 0, 0]]])  # OOV (1) never matches
    out = seq(ids, multi)
    assert out.shape == (3, 2)
    assert torch.allclose(out[:, 0], torch.log1p(torch.tensor([3.0, 2.0, 0.0])))  # history lengths
    assert torch.allclose(out[:, 1], torch.log1p(torch.tensor([2.0, 0.0, 0.0])))  # candidate hits
    kjt = padded_to_kjt(ids.numpy(), multi.numpy(), [f.name for f in feats])
    assert torch.equal(seq.jagged(*split_kjt(kjt, 2, 1, 3)), out)  # the same bits from the KJT


def test_history_match_from_the_kjt_gives_the_padded_bits() -> None:
    inputs = tiny_inputs()
    seq = HistoryMatch.shared_tables(inputs.sparse)
    assert seq.pairs == ((0, 1),)  # (hist, item_id)
    b = tiny_batch(200, seed=3)
    b.multi[5, 0, :3] = b.ids[5, 1]  # candidate repeated in its history
    b.multi[6, 0, :2] = 1  # OOV entries never match an OOV candidate
    b.ids[6, 1] = 1
    padded = seq(torch.from_numpy(b.ids), torch.from_numpy(b.multi))
    jagged = seq.jagged(*split_kjt(inputs.kjt(b), inputs.n_categorical, inputs.n_multi, len(b)))
    assert torch.equal(jagged, padded)
    assert padded[5, 2] == torch.log1p(torch.tensor(3.0)) and padded[6, 2] == 0
    empty = seq.jagged(
        torch.zeros(0, 2, dtype=torch.long),
        torch.zeros(2, 0, dtype=torch.long),
        torch.zeros(0, dtype=torch.long),
    )
    assert empty.shape == (0, 3)


def test_teacher_forward_shapes_and_purity() -> None:
    model = build_teacher(tiny_inputs(), TINY_CFG)
    b = as_inputs(tiny_batch())
    model.eval()
    y1 = model(*b)
    y2 = model(*b)
    assert y1.shape == (16,) and y1.dtype == torch.float32
    assert torch.equal(y1, y2)  # pure: no state changes between calls
    assert torch.isfinite(y1).all()


@pytest.mark.parametrize("cross_low_rank", [4, 0])
def test_forward_gives_the_bits_of_the_old_interaction_formulas(cross_low_rank: int) -> None:
    model = build_teacher(tiny_inputs(), dataclasses.replace(TINY_CFG, cross_low_rank=cross_low_rank))
    model.eval()
    b = tiny_batch(64)
    with torch.no_grad():
        new = model.member_logits(*as_inputs(b))[0]
        assert torch.equal(new, old_teacher_forward(model.members[0], *as_tensors(b)))


def test_ensemble_averages_members_and_train_task_loss() -> None:
    cfg = dataclasses.replace(TINY_CFG, ensemble_size=2, ensemble_width_scales=(1.0, 0.5))
    model = build_teacher(tiny_inputs(), cfg)
    assert isinstance(model, TeacherEnsemble) and len(model.members) == 2
    m0, m1 = (m for m in model.members if isinstance(m, Teacher))
    assert m1.deep.out_dim == 16 and m0.deep.out_dim == 32  # width scale
    b = as_inputs(tiny_batch())
    members = model.member_logits(*b)
    assert members.shape == (2, 16)
    assert not torch.allclose(members[0], members[1])  # different seeds
    assert torch.allclose(model(*b), members.mean(0))
    label = torch.ones(16)
    loss, (loss_out, logits) = TeacherTrainTask(model)(
        teacher_batch(tiny_inputs(), tiny_batch(), label.numpy())
    )
    assert torch.allclose(logits, members.mean(0)) and torch.equal(loss_out, loss.detach())
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert torch.allclose(loss, (bce(members[0], label) + bce(members[1], label)) / 2)


def test_build_is_deterministic_by_seed() -> None:
    a = build_teacher(tiny_inputs(), TINY_CFG).state_dict()
    b = build_teacher(tiny_inputs(), TINY_CFG).state_dict()
    c = build_teacher(tiny_inputs(), dataclasses.replace(TINY_CFG, seed=1)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_build_leaves_the_global_rng_alone_and_keeps_the_old_weights() -> None:
    cfg = dataclasses.replace(TINY_CFG, ensemble_size=2, seed=3)
    torch.manual_seed(99)
    expected_next = torch.rand(5)
    torch.manual_seed(99)
    model = build_teacher(tiny_inputs(), cfg)
    assert torch.equal(torch.rand(5), expected_next)  # the caller's stream continues untouched
    # the weights the old build drew: a global reseed with seed + k before each member
    with torch.random.fork_rng(devices=[]):
        old = []
        for k in range(cfg.ensemble_size):
            torch.manual_seed(cfg.seed + k)
            old.append(Teacher(tiny_inputs(), cfg, member=k))
    old_state = TeacherEnsemble(old).state_dict()
    state = model.state_dict()
    assert list(state) == list(old_state) and all(torch.equal(state[k], old_state[k]) for k in state)


def test_default_config_is_heavy() -> None:
    # a demo-sized layout: 50k items, 20k users, 2 histories over items, 3 small tables, 8 dense
    inputs = TeacherInputs(
        sparse=(
            SparseFeature("user_id", "categorical", 0, "user_id", 20_002, "user"),
            SparseFeature("item_id", "categorical", 1, "item_id", 50_002, "item"),
            SparseFeature("cat", "categorical", 2, "cat", 202, "item"),
            SparseFeature("ctx", "categorical", 3, "ctx", 66, "context"),
            SparseFeature("hist", "multi", 0, "item_id", 50_002, "user"),
            SparseFeature("long_hist", "multi", 1, "item_id", 50_002, "user"),
        ),
        dense_groups=("item",) * 4 + ("context",) * 4,
        n_categorical=4,
        n_multi=2,
        max_len=50,
    )
    cfg = TeacherConfig()
    counts = count_parameters(build_teacher(inputs, cfg))
    # four 64-d members (docs/experiments/real_data.md): ~4.9M each here, 300x the MLP student
    assert cfg.ensemble_size == 4 and cfg.embedding_dim == 64
    assert counts["total"] > 15_000_000
    assert counts["embedding"] > counts["dense"]


def test_one_parameter_count_for_teacher_and_student() -> None:
    teacher = build_teacher(tiny_inputs(), dataclasses.replace(TINY_CFG, ensemble_size=2))
    counts = count_parameters(teacher)
    # the old teacher count summed the state_dict, tables by name: the teacher has no buffer in it
    state = teacher.state_dict()
    emb = sum(v.numel() for k, v in state.items() if "embedding_bags" in k)
    assert counts == {"embedding": emb, "dense": sum(v.numel() for v in state.values()) - emb,
                      "total": sum(v.numel() for v in state.values())}  # fmt: skip
    assert counts["embedding"] == 2 * 8 * (50 + 40 + 30)  # two members, three tables of dim 8
    # trainable only, shared parameters once, embedding = owned by an embedding table
    shared = torch.nn.Linear(3, 2)
    toy = torch.nn.ModuleList([torch.nn.Embedding(10, 4), shared, shared, torch.nn.EmbeddingBag(5, 2)])
    toy[3].weight.requires_grad_(False)
    toy.register_buffer("index", torch.arange(7))
    assert count_parameters(toy) == {"embedding": 40, "dense": 8, "total": 48}


def test_inputs_from_preprocessor_and_round_trip(tiny_data: Path, tiny_schema: Schema) -> None:
    pre = Preprocessor.fit(tiny_data / "train.parquet", tiny_schema)
    inputs = TeacherInputs.from_preprocessor(pre)
    assert [f.name for f in inputs.sparse] == ["user_id", "item_id", "item_cat", "hist"]
    hist = inputs.sparse[3]
    assert hist.table == "item_id" and hist.rows == pre.table_rows("item_id")
    assert inputs.dense_dim == pre.dense_dim  # includes the price missing indicator
    assert inputs.dense_groups[-1] == "item"  # the indicator belongs to price's group
    assert TeacherInputs.from_dict(inputs.to_dict()) == inputs
    other = dataclasses.replace(
        inputs, sparse=(*inputs.sparse[:3], dataclasses.replace(hist, rows=hist.rows + 1))
    )
    diffs = inputs.differences(other)
    assert len(diffs) == 1 and "'hist'" in diffs[0] and str(hist.rows) in diffs[0]


def test_check_batch_names_feature_and_table() -> None:
    inputs = tiny_inputs()
    b = tiny_batch()
    inputs.check_batch(b, "here")
    bad = ModelBatch(b.dense, b.ids.copy(), b.multi)
    bad.ids[0, 1] = 40
    with pytest.raises(DataError, match=r"here: feature 'item_id' .* table 'item_id' has 40 rows"):
        inputs.check_batch(bad, "here")
    with pytest.raises(
        DataError, match=r"'dense' has shape \[16, 2\], the teacher expects \[16, 3\]; was it"
    ):
        inputs.check_batch(ModelBatch(b.dense[:, :2], b.ids, b.multi), "here")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="ensemble_width_scales"):
        TeacherConfig(ensemble_size=2, ensemble_width_scales=(1.0,))
    with pytest.raises(ConfigError, match="unknown key 'teacher.embeding_dim'.*embedding_dim"):
        from_mapping(TeacherConfig, {"embeding_dim": 3}, source="x.yaml", where="teacher")
    cfg = from_mapping(TeacherConfig, {"deep_dims": [8, 4], "schedule": "linear"}, source="x.yaml")
    assert cfg.deep_dims == (8, 4)
