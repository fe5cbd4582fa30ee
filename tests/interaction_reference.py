"""The interaction formulas that ``recdistill.modules.interaction`` replaced, as they were computed.

Kept so tests prove the shared blocks give the same bits as the teacher's old ``pairwise_dots`` and
``SequenceMatch`` and the student's old inline dots and ``match_features`` (commit 32e3c67), and
that the teacher's ``forward`` over a KJT from the data path gives the bits of the old ``forward``,
which built its KJT from padded tensors inside the model.
"""

from __future__ import annotations

import torch
from torchrec import KeyedJaggedTensor

from recdistill.models.student_mlp import StudentInputs
from recdistill.modules.sparse import SparseFeature


def old_teacher_pairwise_dots(x: torch.Tensor) -> torch.Tensor:
    G = x.shape[1]
    gram = torch.bmm(x, x.transpose(1, 2))
    i, j = torch.triu_indices(G, G, offset=1, device=x.device)
    return gram[:, i, j]


def old_student_dots(vecs: torch.Tensor) -> torch.Tensor:
    B, F = vecs.shape[:2]
    i, j = torch.triu_indices(F, F, offset=1)
    gram = torch.bmm(vecs, vecs.transpose(1, 2))
    return gram.reshape(B, -1).index_select(1, (i * F + j).to(torch.int64))


def old_teacher_sequence_match(
    features: list[SparseFeature], ids: torch.Tensor, multi: torch.Tensor
) -> torch.Tensor:
    cats = [f for f in features if f.kind == "categorical"]
    multis = [f for f in features if f.kind == "multi"]
    pairs = [(m.column, c.column) for m in multis for c in cats if m.table == c.table]
    lengths = (multi != 0).sum(-1).float()
    outs = [torch.log1p(lengths)]
    for m, c in pairs:
        target = ids[:, c : c + 1]
        hits = ((multi[:, m, :] == target) & (target > 1)).sum(-1, keepdim=True).float()
        outs.append(torch.log1p(hits))
    return torch.cat(outs, dim=1)


def old_student_match_features(inputs: StudentInputs, ids: torch.Tensor, multi: torch.Tensor) -> torch.Tensor:
    pairs = [(m, c) for t in inputs.tables for m in t.multi_columns for c in t.cat_columns]
    match_multi = torch.tensor([m for m, _ in pairs], dtype=torch.int64)
    match_cat = torch.tensor([c for _, c in pairs], dtype=torch.int64)
    length_multi = torch.tensor([m for t in inputs.tables for m in t.multi_columns], dtype=torch.int64)
    lengths = (multi.index_select(1, length_multi) != 0).sum(2)
    hist = multi.index_select(1, match_multi)
    target = ids.index_select(1, match_cat).unsqueeze(2)
    hits = ((hist == target) & (target > 1)).sum(2)
    return torch.log1p(torch.cat([lengths, hits], dim=1).to(torch.float32))


def old_padded_to_kjt(ids: torch.Tensor, multi: torch.Tensor, keys: list[str]) -> KeyedJaggedTensor:
    """The KJT the teacher's ``forward`` built from padded tensors before the KJT came from the data path."""
    B, C = ids.shape
    cat_values = ids.t().reshape(-1)
    cat_lengths = torch.ones(C * B, dtype=torch.int64, device=ids.device)
    m = multi.transpose(0, 1)
    mask = m != 0
    values = torch.cat([cat_values, m[mask]])
    lengths = torch.cat([cat_lengths, mask.sum(-1).reshape(-1)])
    return KeyedJaggedTensor(keys=keys, values=values, lengths=lengths)


def old_teacher_forward(
    member: torch.nn.Module, dense: torch.Tensor, ids: torch.Tensor, multi: torch.Tensor
) -> torch.Tensor:
    """``Teacher.forward`` before the shared blocks and the KJT data path, on ``member``'s own weights."""
    keys = member.sparse.keys
    kt = member.sparse.ebc(old_padded_to_kjt(ids, multi, keys))
    emb = torch.stack([kt[k] for k in keys], dim=1)
    B = emb.shape[0]
    feats = list(member.sparse.features)
    x0 = torch.cat(
        [
            emb.reshape(B, -1),
            dense,
            old_teacher_sequence_match(feats, ids, multi),
            old_teacher_pairwise_dots(emb),
        ],
        dim=1,
    )
    towers = member.towers(emb, dense)
    arms = [member.deep(x0), towers.reshape(B, -1), old_teacher_pairwise_dots(towers)]
    if member.cross is not None:
        arms.insert(0, member.cross(x0))
    out: torch.Tensor = member.over(torch.cat(arms, dim=1))
    return out
