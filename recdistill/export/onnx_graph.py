"""The MLP student and its preprocessing as ONE ONNX graph: raw request tensors in, probabilities out.

:func:`build_student_graph` writes the graph node by node from a trained
:class:`~recdistill.models.student_mlp.StudentMLP` and the
:class:`~recdistill.data.preprocess.Preprocessor` it was trained with, so ``model.onnx`` runs in
any ONNX runtime with no Python around it (Triton's native onnxruntime backend included)::

    dense [B, N] ─ student columns ─ signed log1p ─ standardise ─ NaN -> 0 ────────────────────┐
                                   └ IsNaN ─ missing indicators ───────────────────────────────┤
    ids   [B, C] ─ student columns ─ slots ─ vector_of_slot ─────────────► B x Fc x D ┐      │
    multi [B, M, L] ─ student columns, lists up to their max_len ─ slots ──────────────┤      │
                      ─ (vector | 1) of slot ─ sum over the list ─ / count ► B x Fm x D ┤      │
                      V = B x F x D ─ flatten ─────────────────────────────────────────┼──────┤
                                   └ V V^T (pairwise dots) ────────────────────────────┘      │
    history: log1p(counts), log1p(#list positions equal to the candidate's) ──────────────────┤
    id bias: bias_of_slot ────────────────────────────────────────────────────────────────────┤
                                                Concat ─ Gemm/Relu .. Gemm ─ Sigmoid ─► prob [B, 1]

How raw ids become slots of lookup tables is :mod:`recdistill.export.onnx_lookup` (no
comparison chains); a slot's vector is one gather from a per-slot copy of the (folded) embedding
while that copy stays below :data:`VECTOR_TABLE_BYTES`, else a gather of the row, then of the
vector. The first ``Gemm`` reads the blocks in this graph's order; its
weight is the student's first layer with the rows moved to match (:class:`_Layout`), zero rows
for what the student does not read (the diagonal and lower triangle of ``V V^T``, indicators of
features that had no missing value in training). The multi-valued sums read the (zero) padding
row of each table and lists only up to the longest student feature's ``max_len``: the input
contract pads every list to its own ``max_len``, so later slots are padding.
``recdistill.export.onnx_mlp.check_parity`` holds the graph to the training-time path.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from recdistill.data.preprocess import Preprocessor
from recdistill.errors import ArtefactError
from recdistill.export.onnx_lookup import Column, GraphBuilder, SlotTables, slot_nodes
from recdistill.models.student_mlp import StudentMLP

OPSET = 18  # BitwiseXor (mix64) needs 18
OUTPUT = "prob"
# a kind's slots read their embedding vectors straight from a [slots, D] table when it stays below
# this many bytes (one gather fewer, ~15% of the graph's time at 128 rows); larger ones read their
# folded row first, then the stacked embedding
VECTOR_TABLE_BYTES = 32 << 20


@dataclass(frozen=True)
class GraphFacts:
    """What :func:`build_student_graph` built: node counts, table sizes, columns per lookup way."""

    nodes: int
    op_counts: dict[str, int]
    slots: int
    embedding_rows: int
    ways: dict[str, int]


@dataclass
class _Layout:
    """The first Gemm's input blocks (graph order) and which student first-layer column each of
    the block's columns carries (``rows[graph column] = student column``)."""

    blocks: list[str] = field(default_factory=list)
    width: int = 0
    rows: dict[int, int] = field(default_factory=dict)

    def add(self, name: str, width: int, carries: dict[int, int]) -> None:
        """``carries``: block column -> student column."""
        self.rows.update({self.width + i: s for i, s in carries.items()})
        self.blocks.append(name)
        self.width += width

    def first_layer(self, weight: np.ndarray) -> np.ndarray:
        """``[graph width, out]`` from the student's ``[out, in]`` weight; zero rows for the rest."""
        placed = sorted(self.rows.values())
        if placed != list(range(weight.shape[1])):
            raise ArtefactError(f"ONNX graph: placed {len(placed)} of the student's {weight.shape[1]} inputs")
        out = np.zeros((self.width, weight.shape[0]), dtype=np.float32)
        for here, student in self.rows.items():
            out[here] = weight[:, student]
        return out


def build_student_graph(
    model: StudentMLP, pre: Preprocessor, *, vector_bytes: int = VECTOR_TABLE_BYTES
) -> tuple[onnx.ModelProto, GraphFacts]:
    """The whole served student as an ONNX model (opset :data:`OPSET`); see the module docstring.

    Inputs ``dense`` FP32 ``[B, n_dense]``, ``ids`` INT64 ``[B, n_categorical]``, ``multi`` INT64
    ``[B, n_multi, max_len]`` (the input contract, ``teacher_only`` columns included and never
    read); output ``prob`` FP32 ``[B, 1]``.
    """
    model.eval()
    inp, s = model.inputs, pre.schema
    if (inp.dense_dim, inp.n_categorical, inp.n_multi, inp.max_len) != (
        pre.dense_dim, len(s.categorical), len(s.multi), pre.max_len
    ):  # fmt: skip
        raise ArtefactError("the student's input widths do not match the preprocessing it is exported with")
    g, layout, tables = GraphBuilder(), _Layout(), SlotTables(model, pre)
    # the student's first-layer columns, block by block (StudentMLP.forward's order)
    n_vec = inp.n_cat_features + inp.n_multi_features
    at = np.cumsum([0, len(inp.dense_columns), n_vec * model.embedding_dim,
                    model.dots.out_dim if model.dots is not None else 0,
                    model.history.out_dim if model.history is not None else 0])  # fmt: skip
    _dense(g, layout, model, pre)
    cats = sorted(
        (Column("ids", j, k) for k, t in enumerate(inp.tables) for j in t.cat_columns), key=lambda c: c.column
    )
    multis = sorted((Column("multi", j, k) for k, t in enumerate(inp.tables) for j in t.multi_columns),
                    key=lambda c: c.column)  # fmt: skip
    names = {("ids", j): f.name for j, f in enumerate(s.categorical)} | {
        ("multi", j): f.name for j, f in enumerate(s.multi)
    }
    segs = {c: tables.segment(c, names[c.kind, c.column]) for c in (*cats, *multis)}
    pairs = model.history is not None and bool(model.history.pairs)
    tables.add_initializers(g, match=pairs, bias=bool(model.biases))
    slots: dict[str, tuple[str, str]] = {}  # kind -> (positions, slots)
    if cats:
        x = g.select("ids", [c.column for c in cats], inp.n_categorical, "ids/student")
        slots["ids"] = slot_nodes(g, x, [segs[c] for c in cats], "ids", 0)
    if multis:
        x = g.select("multi", [c.column for c in multis], inp.n_multi, "multi/student")
        read = max(s.multi[c.column].max_len for c in multis)  # every list is padded to its own max_len
        if read < pre.max_len:
            x = g.op("Slice", [x, g.ints("multi/from", [0]), g.ints("multi/to", [read]), g.ints("multi/axis", [2])],
                     "multi/read")  # fmt: skip
        slots["multi"] = slot_nodes(g, x, [segs[c] for c in multis], "multi", 1)
    E, counts = _vectors(g, layout, model, tables, cats, multis, slots, int(at[1]), vector_bytes)
    if model.history is not None and model.history.out_dim:
        _history(g, layout, model, cats, multis, slots, counts, int(at[3]))
    if model.biases:
        student = int(at[4])
        carries = {}
        for key, t in zip(model.keys, inp.tables, strict=True):
            for j in t.cat_columns if key in model.biases else ():
                carries[[c.column for c in cats].index(j)] = student
                student += 1
        layout.add(g.op("Gather", ["bias_of_slot", slots["ids"][1]], "id_bias"), len(cats), carries)
    _mlp(g, layout, model)

    graph = helper.make_graph(
        g.nodes, "recdistill_student",
        [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["batch", len(s.dense)]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", len(s.categorical)]),
         helper.make_tensor_value_info("multi", TensorProto.INT64, ["batch", len(s.multi), pre.max_len])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", 1])],
        initializer=g.inits,
    )  # fmt: skip
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="recdistill"
    )
    proto.ir_version = helper.find_min_ir_version_for(list(proto.opset_import))
    onnx.checker.check_model(proto)
    ops = Counter(n.op_type for n in proto.graph.node)
    ways = Counter(seg.way for seg in segs.values())
    facts = GraphFacts(
        len(proto.graph.node),
        dict(sorted(ops.items())),
        sum(tables.size.values()),
        int(E.shape[0]),
        dict(ways),
    )
    return proto, facts


def _dense(g: GraphBuilder, layout: _Layout, model: StudentMLP, pre: Preprocessor) -> None:
    """Student dense columns: ``sign(x) log1p(|x|)`` where configured, standardised, NaN -> 0, and
    the missing indicators (``Cast(IsNaN)``) of the features that had missing values in training."""
    dense = pre.schema.dense
    cols = [j for j, f in enumerate(dense) if not f.teacher_only]
    if not cols:
        return
    x = g.select("dense", cols, len(dense), "dense/student")
    nan = g.op("IsNaN", [x], "dense/missing")
    log_mask = np.array([dense[j].transform == "log1p" for j in cols])
    if log_mask.any():  # no Log1p op in ONNX: log(1 + |x|), within 1 ulp of 1 of numpy's log1p
        one_plus = g.op(
            "Add", [g.op("Abs", [x], "dense/abs"), g.const("dense/one", np.float32(1.0))], "dense/one_plus"
        )
        logged = g.op(
            "Mul", [g.op("Sign", [x], "dense/sign"), g.op("Log", [one_plus], "dense/log1p")], "dense/signed"
        )
        x = g.op("Where", [g.const("dense/log1p_columns", log_mask), logged, x], "dense/transformed")
    stats = [pre.dense_stats[dense[j].name] for j in cols]
    centred = g.op(
        "Sub", [x, g.const("dense/mean", np.array([v.mean for v in stats], np.float32))], "dense/centred"
    )
    z = g.op(
        "Div", [centred, g.const("dense/std", np.array([v.std for v in stats], np.float32))], "dense/scaled"
    )
    values = g.op("Where", [nan, g.const("dense/zero", np.float32(0.0)), z], "dense/values")
    # the student's dense columns index the preprocessed block: values, then one indicator per
    # feature with missing values in training
    indicator_of = [j for j, f in enumerate(dense) if pre.dense_stats[f.name].has_missing]
    where = {j: i for i, j in enumerate(cols)}
    values_carry, indicators_carry = {}, {}
    for student, v in enumerate(model.inputs.dense_columns):
        if v < len(dense):
            values_carry[where[v]] = student
        else:
            indicators_carry[where[indicator_of[v - len(dense)]]] = student
    layout.add(values, len(cols), values_carry)
    if indicators_carry:
        layout.add(g.op("Cast", [nan], "dense/indicators", to=TensorProto.FLOAT), len(cols), indicators_carry)


def _vectors(
    g: GraphBuilder,
    layout: _Layout,
    model: StudentMLP,
    tables: SlotTables,
    cats: list[Column],
    multis: list[Column],
    slots: dict[str, tuple[str, str]],
    student_at: int,
    vector_bytes: int,
) -> tuple[np.ndarray, str]:
    """Feature vectors ``V [B, F, D]`` (categorical columns, then pooled lists), flattened, and
    ``V V^T`` for the pairwise dots. Returns the stacked embedding and the lists' counts
    ``[B, M, 1]`` (non-padding entries, "" without lists)."""
    inp, D = model.inputs, model.embedding_dim
    weights = [cast(torch.nn.Embedding, model.embeddings[key]).weight.detach()
               for key in model.keys]  # fmt: skip
    E = np.concatenate([w[: t.rows].numpy() for w, t in zip(weights, inp.tables, strict=True)] or
                       [np.zeros((0, D), np.float32)]).astype(np.float32)  # fmt: skip
    vecs, counts = [], ""
    if cats:
        vecs.append(_lookup(g, "ids", tables.rows("ids"), E, slots["ids"][1], vector_bytes))  # B x Fc x D
    if multis:
        for k in tables.pad_row:  # the sums below read padding as zero rows
            if bool(weights[k][inp.tables[k].rows].any()):
                raise ArtefactError(
                    f"student table {inp.tables[k].name!r}: its padding row is not zero (training keeps it at zero: "
                    "nn.Embedding padding_idx); the checkpoint is not a trained student"
                )
        counted = np.concatenate([np.concatenate([E, np.ones((len(E), 1), np.float32)], axis=1),
                                  np.zeros((len(tables.pad_row), D + 1), np.float32)])  # fmt: skip
        # list-major L x B x M: the sum over the list then runs over the outermost axis (fast)
        slots_lbm = g.op("Transpose", [slots["multi"][1]], "multi/list_major", perm=[2, 0, 1])
        looked = _lookup(
            g, "multi", tables.rows("multi"), counted, slots_lbm, vector_bytes
        )  # L x B x M x D+1
        summed = g.op("ReduceSum", [looked, g.ints("multi/list_axis", [0])], "multi/sum", keepdims=0)
        g.op("Split", [summed, g.ints("multi/split", [D, 1])], "multi/parts", outputs=2, axis=2)
        sums, counts = g.outs("multi/parts", 2)  # B x M x D, B x M x 1
        if model.pooling == "mean":
            count = g.op("Max", [counts, g.const("multi/one", np.float32(1.0))], "multi/count")
            sums = g.op("Div", [sums, count], "multi/mean")
        vecs.append(sums)
    if not vecs:
        return E, counts
    order = [*cats, *multis]  # this graph's feature vectors; the student's go table by table
    mine = {(c.kind, c.column): i for i, c in enumerate(order)}
    theirs = [mine[kind, j] for t in inp.tables for kind, cols in (("ids", t.cat_columns), ("multi", t.multi_columns))
              for j in cols]  # fmt: skip
    F = len(order)
    V = vecs[0] if len(vecs) == 1 else g.op("Concat", vecs, "vectors", axis=1)
    layout.add(g.op("Flatten", [V], "vectors/flat", axis=1), F * D,
               {mine_i * D + d: student_at + k * D + d for k, mine_i in enumerate(theirs) for d in range(D)})  # fmt: skip
    if model.dots is not None and F >= 2:
        gram = g.op(
            "MatMul", [V, g.op("Transpose", [V], "vectors/T", perm=[0, 2, 1])], "dots/gram"
        )  # B x F x F
        iu, ju = torch.triu_indices(F, F, offset=1)
        pairs = {}
        for p, (a, b) in enumerate(zip(iu.tolist(), ju.tolist(), strict=True)):
            x, y = sorted((theirs[a], theirs[b]))
            pairs[x * F + y] = student_at + F * D + p
        layout.add(g.op("Flatten", [gram], "dots/flat", axis=1), F * F, pairs)
    return E, counts


def _lookup(
    g: GraphBuilder, kind: str, rows: np.ndarray, table: np.ndarray, slots: str, vector_bytes: int
) -> str:
    """``table`` rows of ``slots``: one Gather from a per-slot copy ``table[rows]`` when it stays
    within ``vector_bytes``, else a Gather of the row (INT32) and one of the vector."""
    if rows.size * table.shape[1] * table.itemsize <= vector_bytes:
        return g.op("Gather", [g.const(f"{kind}/vector_of_slot", table[rows]), slots], f"{kind}/vectors")
    looked = g.op("Gather", [g.const(f"{kind}/row_of_slot", rows.astype(np.int32)), slots], f"{kind}/rows")
    return g.op("Gather", [g.const(f"{kind}/embedding", table), looked], f"{kind}/vectors")


def _history(
    g: GraphBuilder,
    layout: _Layout,
    model: StudentMLP,
    cats: list[Column],
    multis: list[Column],
    slots: dict[str, tuple[str, str]],
    counts: str,
    student_at: int,
) -> None:
    """``log1p`` of the lists' lengths and of every pair's hits: list entries whose position equals
    the candidate's position, when the candidate is a known id (``match_of_slot`` >= 0)."""
    hist = model.history
    assert hist is not None
    parts, carries, width = [], {}, 0
    if hist.length_columns:
        parts.append(g.op("Flatten", [counts], "history/lengths", axis=1))  # B x M, this graph's order
        where = {c.column: i for i, c in enumerate(multis)}
        carries = {where[m]: student_at + k for k, m in enumerate(hist.length_columns)}
        width = len(multis)
    if hist.pairs:
        lists = [next(i for i, c in enumerate(multis) if c.column == m) for m, _ in hist.pairs]
        cands = [next(i for i, c in enumerate(cats) if c.column == cc) for _, cc in hist.pairs]
        list_pos = g.op("Gather", [slots["multi"][0], g.ints("history/lists", lists)], "history/list", axis=1)
        cand_slot = g.op(
            "Gather",
            [slots["ids"][1], g.ints("history/candidates", cands, (len(cands), 1))],
            "history/cand",
            axis=1,
        )
        cand = g.op(
            "Cast",
            [g.op("Gather", ["match_of_slot", cand_slot], "history/cand_match")],
            "history/cand_position",
            to=TensorProto.INT64,
        )  # fmt: skip  B x P x 1, -1: no match
        hit = g.op(
            "Cast", [g.op("Equal", [list_pos, cand], "history/equal")], "history/hit", to=TensorProto.FLOAT
        )
        parts.append(g.op("ReduceSum", [hit, g.ints("history/list_axis", [2])], "history/hits", keepdims=0))
        n_len = len(hist.length_columns)
        carries |= {width + p: student_at + n_len + p for p in range(len(hist.pairs))}
        width += len(hist.pairs)
    both = parts[0] if len(parts) == 1 else g.op("Concat", parts, "history/counts", axis=1)
    one_plus = g.op("Add", [both, g.const("history/one", np.float32(1.0))], "history/one_plus")
    layout.add(g.op("Log", [one_plus], "history/log1p"), width, carries)


def _mlp(g: GraphBuilder, layout: _Layout, model: StudentMLP) -> None:
    """Concat -> Gemm (the first layer's rows in this graph's order) -> Relu -> .. -> Gemm -> Sigmoid."""
    linears = [m for m in model.mlp.layers if isinstance(m, torch.nn.Linear)] + [model.logit]
    h = layout.blocks[0] if len(layout.blocks) == 1 else g.op("Concat", layout.blocks, "mlp/input", axis=1)
    for i, lin in enumerate(linears):
        weight = lin.weight.detach().numpy()
        w = layout.first_layer(weight) if i == 0 else weight.T.astype(np.float32)
        b = lin.bias.detach().numpy().astype(np.float32)
        h = g.op("Gemm", [h, g.const(f"mlp/w{i}", w), g.const(f"mlp/b{i}", b)], f"mlp/linear{i}")
        if i < len(linears) - 1:
            h = g.op("Relu", [h], f"mlp/relu{i}")
    g.op("Sigmoid", [h], OUTPUT)
