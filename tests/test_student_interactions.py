"""The student's interaction blocks (dot products, history match) and checkpoint formats, on hand-made tensors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from recdistill.errors import ArtefactError
from recdistill.models.student_mlp import (
    StudentInputs,
    StudentMLP,
    StudentTable,
    checkpoint_dict,
    count_parameters,
    load_student,
)

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


def test_history_match_counts_candidates_in_the_history() -> None:
    _, ids, multi = batch()
    got = model(history_match=True).match_features(ids, multi)
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
    assert float(m.match_features(ids, multi)[0, 2]) == 0.0


def test_forward_is_mlp_over_embeddings_dots_and_matches() -> None:
    dense, ids, multi = batch()
    m = model(dot_interaction=True, history_match=True)
    vecs = m.feature_vectors(ids, multi)  # B x F x D, F = 3 categorical + 2 pooled
    assert vecs.shape == (3, 5, 3)
    dots = [(vecs[:, i] * vecs[:, j]).sum(1) for i in range(5) for j in range(i + 1, 5)]
    x = torch.cat([dense[:, :1], vecs.reshape(3, -1), torch.stack(dots, 1), m.match_features(ids, multi)], 1)
    assert m.mlp.in_dim == 1 + 15 + 10 + 4 == x.shape[1]
    torch.testing.assert_close(m(dense, ids, multi), m.logit(m.mlp(x)).squeeze(-1))
    # the teacher-only dense column is never read
    other = dense.clone()
    other[:, 1] = -7.0
    torch.testing.assert_close(m(other, ids, multi), m(dense, ids, multi))
    # table by table: item, pooled recent items, category, pooled categories, context; the pooled
    # vector of an empty list is zero (mean over no entries)
    assert float(vecs[2, [1, 3]].detach().abs().sum()) == 0.0 < float(vecs[0, [1, 3]].detach().abs().sum())


def test_old_checkpoints_load_and_foreign_ones_fail_clearly(tmp_path: Path) -> None:
    dense, ids, multi = batch()
    plain = model()
    ckpt = checkpoint_dict(plain, embedding_dim=3, hidden=(5,), fingerprint="f" * 64)
    # format /1: no interaction keys in the architecture, no interaction buffers in the weights
    old = {**ckpt, "format": "recdistill.student_mlp/1"}
    old["architecture"] = {k: ckpt["architecture"][k] for k in ("embedding_dim", "hidden", "pooling")}
    old["state_dict"] = {
        k: v
        for k, v in ckpt["state_dict"].items()
        if k not in ("dot_index", "match_multi", "match_cat", "length_multi")
    }
    torch.save(old, tmp_path / "old.pt")
    loaded, fingerprint = load_student(tmp_path / "old.pt")
    assert fingerprint == "f" * 64 and not loaded.dot_interaction and not loaded.history_match
    torch.testing.assert_close(loaded(dense, ids, multi), plain.eval()(dense, ids, multi))
    # format /2 round trip with both blocks on
    full = model(dot_interaction=True, history_match=True, id_bias=True).eval()
    torch.save(checkpoint_dict(full, embedding_dim=3, hidden=(5,), fingerprint="g"), tmp_path / "new.pt")
    again, _ = load_student(tmp_path / "new.pt")
    assert again.dot_interaction and again.history_match and again.id_bias and again.id_bias_max_rows == 8
    torch.testing.assert_close(again(dense, ids, multi), full(dense, ids, multi))
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
