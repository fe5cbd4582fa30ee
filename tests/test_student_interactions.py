"""The interaction blocks the teacher and the student share (pairwise dots, history match), the
student's use of them and its checkpoint formats, on hand-made tensors.

The formulas these blocks replaced are kept in ``interaction_reference.py`` to prove the blocks
give the same bits.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from interaction_reference import (
    old_student_dots,
    old_student_match_features,
    old_teacher_pairwise_dots,
    old_teacher_sequence_match,
)

from recdistill.data.batch import ModelBatch
from recdistill.errors import ArtefactError, DataError
from recdistill.models.params import count_parameters
from recdistill.models.student_mlp import (
    StudentInputs,
    StudentMLP,
    StudentTable,
    checkpoint_dict,
    load_student,
)
from recdistill.modules.interaction import HistoryMatch, PairwiseDots
from recdistill.modules.sparse import SparseFeature

L = 4
# contract: dense [B, 2] (column 1 teacher-only), ids [B, 3] = (item, category, context),
# multi [B, 2, L] = (recent items, their categories); items share one table, categories another
INPUTS = StudentInputs(
    dense_columns=(0,),
    tables=(
        StudentTable("item", source_rows=12, rows=12, cat_columns=(0,), multi_columns=(0,)),
        StudentTable("category", source_rows=6, rows=6, cat_columns=(1,), multi_columns=(1,)),
        StudentTable("context", source_rows=4, rows=4, cat_columns=(2,), multi_columns=()),
    ),
    dense_dim=2,
    n_categorical=3,
    n_multi=2,
    max_len=L,
)


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dense = torch.tensor([[0.5, 9.0], [-1.0, 9.0], [0.0, 9.0]])
    ids = torch.tensor([[5, 2, 3], [1, 3, 2], [7, 4, 2]])  # row 1: out-of-vocabulary item
    multi = torch.tensor(
        [
            [[5, 5, 7, 0], [2, 2, 3, 0]],  # item 5 twice in the history, category 2 twice
            [[1, 1, 0, 0], [3, 0, 0, 0]],  # OOV rows never match the OOV candidate
            [[0, 0, 0, 0], [0, 0, 0, 0]],  # empty history
        ]
    )
    return dense, ids, multi


def model(*, dot_interaction: bool = False, history_match: bool = False, id_bias: bool = False) -> StudentMLP:
    torch.manual_seed(0)
    return StudentMLP(
        INPUTS, embedding_dim=3, hidden=(5,), dot_interaction=dot_interaction, history_match=history_match,
        id_bias=id_bias, id_bias_max_rows=8,
    )  # fmt: skip


def random_ids(B: int, C: int, M: int, L: int, rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, rows, (B, C), generator=g)
    multi = torch.randint(0, rows, (B, M, L), generator=g)
    multi[:, :, L // 2 :] = 0  # padding
    multi[0] = 0  # an empty history
    return ids, multi


# -- the shared blocks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("F", [0, 1, 2, 5, 9])
def test_pairwise_dots_give_the_bits_of_both_old_formulas(F: int) -> None:
    x = torch.randn(37, F, 6, generator=torch.Generator().manual_seed(F), requires_grad=True)
    dots = PairwiseDots(F)
    got = dots(x)
    assert got.shape == (37, F * (F - 1) // 2) == (37, dots.out_dim)
    assert torch.equal(got, old_teacher_pairwise_dots(x)) and torch.equal(got, old_student_dots(x))
    # the teacher trains through it: the gradient is the old one too
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(1))
    (new_grad,) = torch.autograd.grad((got * w).sum(), x)
    (old_grad,) = torch.autograd.grad((old_teacher_pairwise_dots(x) * w).sum(), x)
    assert torch.equal(new_grad, old_grad)


def test_history_match_gives_the_bits_of_both_old_formulas() -> None:
    # the teacher: every multi column's length, pairs multi-major (two lists over one table)
    feats = [
        SparseFeature("item", "categorical", 0, "item", 30, "item"),
        SparseFeature("user", "categorical", 1, "user", 30, "user"),
        SparseFeature("cat", "categorical", 2, "cat", 30, "item"),
        SparseFeature("hist", "multi", 0, "item", 30, "user"),
        SparseFeature("hist_cat", "multi", 1, "cat", 30, "user"),
        SparseFeature("long_hist", "multi", 2, "item", 30, "user"),
    ]
    ids, multi = random_ids(301, 3, 3, 8, 30, seed=0)
    ids[:5, 0] = 1  # out-of-vocabulary candidates
    multi[:5, 0, :3] = 1
    ids[5:9, 0] = multi[5:9, 0, 0]  # candidates in their history
    teacher = HistoryMatch.shared_tables(feats)
    assert teacher.pairs == ((0, 0), (1, 2), (2, 0)) and teacher.out_dim == 6
    assert torch.equal(teacher(ids, multi), old_teacher_sequence_match(feats, ids, multi))
    # the student: table by table, only its own lists (multi column 2 plays a teacher-only one)
    student = model(history_match=True).history
    assert student is not None and student.pairs == ((0, 0), (1, 1))
    assert torch.equal(student(ids, multi), old_student_match_features(INPUTS, ids, multi))


def test_interaction_buffers_stay_out_of_the_state_dict() -> None:
    # checkpoints hold weights only, so teacher checkpoints keep their keys (see load_student for /2)
    for block in (PairwiseDots(5), HistoryMatch([0, 1], [(0, 0)])):
        assert dict(block.state_dict()) == {} and len(list(block.buffers())) > 0
    m = model(dot_interaction=True, history_match=True)
    assert not {"dot_index", "match_multi", "match_cat", "length_multi"} & set(m.state_dict())


def test_history_match_counts_candidates_in_the_history() -> None:
    _, ids, multi = batch()
    history = model(history_match=True).history
    assert history is not None
    got = history(ids, multi)
    # columns: log1p(length) of both lists, then (recent items, item), (recent categories, category)
    expected = torch.log1p(torch.tensor([[3.0, 3.0, 2.0, 2.0], [2.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(got, expected)


def test_history_match_compares_unfolded_ids() -> None:
    folded = StudentInputs(**{**INPUTS.__dict__, "tables": (
        StudentTable("item", source_rows=12, rows=4, cat_columns=(0,), multi_columns=(0,)), *INPUTS.tables[1:])})  # fmt: skip
    m = StudentMLP(folded, embedding_dim=3, hidden=(5,), history_match=True)
    ids = torch.tensor([[2, 2, 0]])
    multi = torch.tensor([[[4, 6, 0, 0], [0, 0, 0, 0]]])  # rows 4 and 6 fold onto row 2, but are other items
    assert m.feature_vectors(ids, multi).shape == (1, 5, 3)
    assert m.history is not None and float(m.history(ids, multi)[0, 2]) == 0.0


def test_forward_is_mlp_over_embeddings_dots_and_matches() -> None:
    dense, ids, multi = batch()
    m = model(dot_interaction=True, history_match=True)
    vecs = m.feature_vectors(ids, multi)  # B x F x D, F = 3 categorical + 2 pooled
    assert vecs.shape == (3, 5, 3)
    dots = [(vecs[:, i] * vecs[:, j]).sum(1) for i in range(5) for j in range(i + 1, 5)]
    matches = old_student_match_features(INPUTS, ids, multi)
    x = torch.cat([dense[:, :1], vecs.reshape(3, -1), torch.stack(dots, 1), matches], 1)
    assert m.mlp.in_dim == 1 + 15 + 10 + 4 == x.shape[1]
    torch.testing.assert_close(m(dense, ids, multi), m.logit(m.mlp(x)).squeeze(-1))
    # the old forward, verbatim (bmm dots, inline history match): the same bits
    old_x = torch.cat([dense[:, :1], vecs.reshape(3, -1), old_student_dots(vecs), matches], 1)
    assert torch.equal(m(dense, ids, multi), m.logit(m.mlp(old_x)).squeeze(-1))
    # the teacher-only dense column is never read
    other = dense.clone()
    other[:, 1] = -7.0
    torch.testing.assert_close(m(other, ids, multi), m(dense, ids, multi))
    # table by table: item, pooled recent items, category, pooled categories, context; the pooled
    # vector of an empty list is zero (mean over no entries)
    assert float(vecs[2, [1, 3]].detach().abs().sum()) == 0.0 < float(vecs[0, [1, 3]].detach().abs().sum())


def test_batch_check_is_the_teachers_shape_check() -> None:
    dense, ids, multi = (t.numpy() for t in batch())
    INPUTS.check_batch(ModelBatch(dense, ids, multi), "here")
    with pytest.raises(
        DataError, match=r"here: model tensor 'multi' has shape \[3, 2, 3\], the student expects \[3, 2, 4\]"
    ):
        INPUTS.check_batch(ModelBatch(dense, ids, multi[:, :, :3]), "here")


def test_old_checkpoints_load_and_foreign_ones_fail_clearly(tmp_path: Path) -> None:
    dense, ids, multi = batch()
    plain = model()
    ckpt = checkpoint_dict(plain, embedding_dim=3, hidden=(5,), fingerprint="f" * 64)
    # format /1: no interaction keys in the architecture, no interaction buffers in the weights
    old = {**ckpt, "format": "recdistill.student_mlp/1"}
    old["architecture"] = {k: ckpt["architecture"][k] for k in ("embedding_dim", "hidden", "pooling")}
    assert ckpt["format"] == "recdistill.student_mlp/3"
    assert not {"dot_index", "match_multi", "match_cat", "length_multi"} & set(ckpt["state_dict"])
    torch.save(old, tmp_path / "old.pt")
    loaded, fingerprint = load_student(tmp_path / "old.pt")
    assert fingerprint == "f" * 64 and not loaded.dot_interaction and not loaded.history_match
    torch.testing.assert_close(loaded(dense, ids, multi), plain.eval()(dense, ids, multi))
    # format /3 round trip with both blocks on
    full = model(dot_interaction=True, history_match=True, id_bias=True).eval()
    torch.save(checkpoint_dict(full, embedding_dim=3, hidden=(5,), fingerprint="g"), tmp_path / "new.pt")
    again, _ = load_student(tmp_path / "new.pt")
    assert again.dot_interaction and again.history_match and again.id_bias and again.id_bias_max_rows == 8
    assert torch.equal(again(dense, ids, multi), full(dense, ids, multi))
    # format /2 stored the blocks' index buffers with the weights (F = 5 feature vectors here)
    i, j = torch.triu_indices(5, 5, offset=1)
    v2 = checkpoint_dict(full, embedding_dim=3, hidden=(5,), fingerprint="g")
    v2["format"] = "recdistill.student_mlp/2"
    v2["state_dict"] = {
        **v2["state_dict"],
        "dot_index": i * 5 + j,
        "match_multi": torch.tensor([0, 1]),
        "match_cat": torch.tensor([0, 1]),
        "length_multi": torch.tensor([0, 1]),
    }
    torch.save(v2, tmp_path / "v2.pt")
    from_v2, _ = load_student(tmp_path / "v2.pt")
    assert torch.equal(from_v2(dense, ids, multi), full(dense, ids, multi))
    torch.save({**old, "format": "recdistill.student_mlp/9"}, tmp_path / "future.pt")
    with pytest.raises(ArtefactError, match=r"format 'recdistill.student_mlp/9'.*retrain"):
        load_student(tmp_path / "future.pt")
    # weights of another architecture: a clear error, not a torch traceback
    bad = checkpoint_dict(full, embedding_dim=3, hidden=(5,), fingerprint="g")
    bad["architecture"] = {**bad["architecture"], "dot_interaction": False}
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ArtefactError, match="do not fit the stored architecture"):
        load_student(tmp_path / "bad.pt")
    assert math.isfinite(float(again(dense, ids, multi).sum()))


def test_id_bias_is_one_scalar_per_id_folded_above_its_own_cap() -> None:
    dense, ids, multi = batch()
    ids[2, 0] = 11  # the last item row of a 12-row vocabulary
    m = model(id_bias=True)
    tables = {k: e for k, e in m.biases.items() if isinstance(e, torch.nn.Embedding)}
    assert {k: e.weight.shape[0] for k, e in tables.items()} == {
        "t0_item": 8,
        "t1_category": 6,
        "t2_context": 4,
    }
    with torch.no_grad():
        for e in tables.values():
            e.weight.copy_(torch.arange(e.weight.shape[0], dtype=torch.float32)[:, None])
    x = torch.cat([dense[:, :1], m.feature_vectors(ids, multi).reshape(3, -1), ids.float()], 1)
    x[2, -3] = 5.0  # item row 11 folds into 8 bias rows: 2 + (11 - 2) % 6
    torch.testing.assert_close(m(dense, ids, multi), m.logit(m.mlp(x)).squeeze(-1))
    params = count_parameters(m)
    assert params["embedding"] == 3 * (13 + 7 + 4) + (8 + 6 + 4)
