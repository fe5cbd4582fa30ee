"""Raw ids -> slots of lookup tables, as ONNX nodes: the id half of :mod:`recdistill.export.onnx_graph`.

Every student id column owns a *segment* of slots (the categorical columns and the lists have a
slot space each); a segment lays out its vocabulary's rows the way the preprocessing maps ids
(``recdistill.data.idmap`` and ``recdistill.data.preprocess``), so one gather per kind of value
reads all columns at once: the folded, stacked embedding row of each slot (or, when that table
is small enough, its vector: :func:`recdistill.export.onnx_graph`), ``match_of_slot`` (history
matches) and ``bias_of_slot`` (``id_bias``). A raw id reaches its *position* in the segment
(``slot = start + position``) in one of three ways, chosen per vocabulary:

* ``direct`` (:func:`~recdistill.data.idmap.table_size` gives a table): ``min(uint64(id + 1),
  size - 1)``, the :class:`~recdistill.data.idmap.IdMap` clamp: -1 is position 0 (missing),
  unseen ids, huge ids (``2**40``) and ids near ``2**63`` the last position (out of vocabulary).
  Five elementwise nodes for all columns of a tensor together.
* ``hashed`` (``hash_buckets``): ``2 + mix64(id) % buckets``, missing 0, as the preprocessor does.
* ``searched`` (keys too large or too sparse for a direct table, e.g. hashed strings): the
  vocabulary's keys (and -1) in a bucketed hash table, ``mix64(id) % buckets`` with every bucket
  ``width`` entries wide; the position stored with the matching key, else 0 (out of vocabulary).
  Positions: 0 out of vocabulary, 1 missing, ``2 + k`` for ``keys[k]``.

A position identifies the id within its vocabulary (every column reading that vocabulary has the
same layout), which is what history matches compare. Ids below -1 are outside the input contract
(the serving layer rejects them); direct and searched vocabularies give them the out-of-vocabulary
position, hashed ones a bucket; nothing fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from recdistill.data.batch import FIRST_ID_ROW, OOV_ROW, PAD_ROW
from recdistill.data.idmap import TABLE_SLOTS_PER_KEY, IdMap, table_size
from recdistill.data.preprocess import Preprocessor, mix64
from recdistill.models.student_mlp import StudentMLP, fold_rows

SEARCH_LOAD = 2.0  # keys per bucket of a searched vocabulary's hash table, on average
_MIX_ADD = 0x9E3779B97F4A7C15
_MIX_STEPS = ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, None))  # shift, xor, multiply


@dataclass
class GraphBuilder:
    """Nodes and initializers of one graph; every name is made unique (``name``, ``name_1``, ..)."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)
    _names: dict[str, int] = field(default_factory=dict)

    def _name(self, base: str) -> str:
        k = self._names.get(base, 0)
        self._names[base] = k + 1
        return base if k == 0 else f"{base}_{k}"

    def const(self, name: str, value: np.ndarray | np.generic) -> str:
        name = self._name(name)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(np.asarray(value)), name))
        return name

    def ints(self, name: str, values: Sequence[int] | int, shape: tuple[int, ...] | None = None) -> str:
        """An INT64 constant (a scalar for an int; ``shape`` reshapes a sequence)."""
        a = np.array(values, dtype=np.int64)
        return self.const(name, a if shape is None else a.reshape(shape))

    def op(self, op_type: str, inputs: Sequence[str], name: str, *, outputs: int = 1, **attrs: Any) -> str:
        """Append a node and return its output (with ``outputs > 1``: ``name:0``, ``name:1``, ..
        via :meth:`outs`)."""
        name = self._name(name)
        outs = [name] if outputs == 1 else self.outs(name, outputs)
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return name

    @staticmethod
    def outs(name: str, n: int) -> list[str]:
        return [f"{name}:{i}" for i in range(n)]

    def select(self, x: str, columns: Sequence[int], width: int, name: str) -> str:
        """``x`` itself when ``columns`` are all ``width`` columns in order, else their Gather on axis 1."""
        if list(columns) == list(range(width)):
            return x
        return self.op("Gather", [x, self.ints(f"{name}/columns", columns)], name, axis=1)


def mix64_nodes(g: GraphBuilder, u: str, where: str) -> str:
    """splitmix64 of UINT64 ``u``, elementwise (:func:`recdistill.data.preprocess.mix64`)."""
    z = g.op("Add", [u, g.const(f"{where}/mix_add", np.uint64(_MIX_ADD))], f"{where}/mix")
    for shift, mul in _MIX_STEPS:
        s = g.op(
            "BitShift", [z, g.const(f"{where}/shift", np.uint64(shift))], f"{where}/shr", direction="RIGHT"
        )
        z = g.op("BitwiseXor", [z, s], f"{where}/xor")
        if mul is not None:
            z = g.op("Mul", [z, g.const(f"{where}/mul", np.uint64(mul))], f"{where}/mul")
    return z


@dataclass(frozen=True)
class Column:
    """A student id column: ``kind`` (``ids`` | ``multi``), its raw column, its student table."""

    kind: str
    column: int
    table: int


@dataclass(frozen=True)
class Segment:
    """Slots ``start .. start + size - 1``; ``way``: ``direct`` | ``hashed`` | ``searched``."""

    way: str
    start: int
    size: int
    buckets: int = 0  # hashed: hash buckets; searched: buckets of its hash table
    base: int = 0  # searched: its first bucket in the shared hash table


class SlotTables:
    """The per-slot tables, filled segment by segment (one per kind and vocabulary).

    ``rows[kind]``: per slot of ``kind`` (``ids`` | ``multi``) the stacked embedding row
    (``offset[k]`` + the folded row of table ``k``); list segments send padding to ``pad_row[k]``,
    a zero row appended after the stacked tables. ``match``: per categorical slot the position of
    a known id (else -1). ``bias``: per categorical slot of an ``id_bias`` table, the id's bias.
    ``hash_keys`` / ``hash_positions``: the searched vocabularies' buckets, side by side.
    """

    def __init__(self, model: StudentMLP, pre: Preprocessor) -> None:
        self.model, self.pre = model, pre
        tables = model.inputs.tables
        self.offset = np.cumsum([0, *(t.rows for t in tables)])
        multi_tables = [k for k, t in enumerate(tables) if t.multi_columns]
        self.pad_row = {k: int(self.offset[-1]) + i for i, k in enumerate(multi_tables)}
        self._rows: dict[str, list[np.ndarray]] = {"ids": [], "multi": []}
        self._match: list[np.ndarray] = []
        self._bias: list[np.ndarray] = []
        self.size = {"ids": 0, "multi": 0}
        self.hash_keys: list[np.ndarray] = []
        self.hash_positions: list[np.ndarray] = []
        self.n_buckets = 0
        self._segments: dict[tuple[str, str], Segment] = {}

    def segment(self, c: Column, feature: str) -> Segment:
        """The segment of column ``c`` (reading ``feature``'s vocabulary), made on first use."""
        name = self.pre.table_name(feature)
        if (c.kind, name) not in self._segments:
            self._segments[c.kind, name] = self._new_segment(c, name)
        return self._segments[c.kind, name]

    def _new_segment(self, c: Column, name: str) -> Segment:
        if name in self.pre.hash_buckets:
            nb = self.pre.hash_buckets[name]
            seg, unfolded = Segment("hashed", self.size[c.kind], nb + 2, buckets=nb), np.arange(nb + 2)
        else:
            m = self.pre.id_maps[name]
            size = table_size(m, max_slots_per_key=TABLE_SLOTS_PER_KEY)
            if size is not None:  # [PAD_ROW, rows of ids 0 .. max, OOV_ROW]
                seg, unfolded = Segment("direct", self.size[c.kind], size), m.value_table(size=size)
            else:
                seg, unfolded = self._searched(m, self.size[c.kind])
        self._add(c, unfolded.astype(np.int64))
        return seg

    def _searched(self, m: IdMap, start: int) -> tuple[Segment, np.ndarray]:
        """Positions ``[OOV, PAD, key 0, ..]`` and the hash-table buckets of -1 and every key."""
        ids = np.concatenate([[-1], m.keys]).astype(np.int64)
        positions = np.arange(1, ids.size + 1, dtype=np.int64)  # -1 at 1, keys from 2 (0: not found)
        nb = max(1, int(np.ceil(ids.size / SEARCH_LOAD)))
        bucket = (mix64(ids) % np.uint64(nb)).astype(np.int64)
        order = np.argsort(bucket, kind="stable")
        counts = np.bincount(bucket, minlength=nb)
        rank = np.arange(ids.size) - np.repeat(np.cumsum(counts) - counts, counts)  # place in its bucket
        keys = np.full((nb, int(counts.max())), -1, dtype=np.int64)
        found = np.zeros_like(keys)  # an empty entry: position 0, out of vocabulary
        keys[bucket[order], rank] = ids[order]
        found[bucket[order], rank] = positions[order]
        self.hash_keys.append(keys)
        self.hash_positions.append(found)
        seg = Segment("searched", start, ids.size + 1, buckets=nb, base=self.n_buckets)
        self.n_buckets += nb
        return seg, np.concatenate([[OOV_ROW, PAD_ROW], FIRST_ID_ROW + np.arange(m.keys.size)])

    def _add(self, c: Column, unfolded: np.ndarray) -> None:
        """Append the slot values of a segment whose positions hold the rows ``unfolded``."""
        model, t = self.model, self.model.inputs.tables[c.table]
        r = torch.from_numpy(unfolded)
        folded = (fold_rows(r, t.rows) if t.folded else r).numpy() + self.offset[c.table]
        if c.kind == "multi":  # padding reads the zero row; lists are never the candidate side
            self._rows["multi"].append(np.where(unfolded == PAD_ROW, self.pad_row[c.table], folded))
        else:
            self._rows["ids"].append(folded)
            self._match.append(np.where(unfolded >= FIRST_ID_ROW, np.arange(unfolded.size), -1))
            bias = np.zeros(unfolded.size, dtype=np.float32)
            key = model.keys[c.table]
            if key in model.biases:
                rows = model.bias_rows[key]
                weight = cast(torch.nn.Embedding, model.biases[key]).weight.detach()
                bias = weight[fold_rows(r, rows) if rows < t.source_rows else r, 0].numpy()
            self._bias.append(bias.astype(np.float32))
        self.size[c.kind] += unfolded.size

    def rows(self, kind: str) -> np.ndarray:
        """INT64 ``[slots of kind]``: the stacked embedding row of every slot."""
        return np.concatenate(self._rows[kind]).astype(np.int64)

    def add_initializers(self, g: GraphBuilder, *, match: bool, bias: bool) -> None:
        """The hash table when a vocabulary is searched, ``match_of_slot`` (INT32, with ``match``)
        and ``bias_of_slot`` (FP32, with ``bias``), over the categorical slots."""
        for name, parts, dtype, wanted in (("match_of_slot", self._match, np.int32, match),
                                           ("bias_of_slot", self._bias, np.float32, bias)):  # fmt: skip
            if parts and wanted:
                g.inits.append(numpy_helper.from_array(np.concatenate(parts).astype(dtype), name))
        if self.hash_keys:
            g.inits.append(numpy_helper.from_array(_side_by_side(self.hash_keys, -1), "hash_keys"))
            g.inits.append(numpy_helper.from_array(_side_by_side(self.hash_positions, 0), "hash_positions"))


def _side_by_side(parts: list[np.ndarray], fill: int) -> np.ndarray:
    """Several vocabularies' buckets as one ``[buckets, widest]`` table."""
    width = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=fill) for p in parts])


def slot_nodes(g: GraphBuilder, x: str, segs: list[Segment], where: str, trailing: int) -> tuple[str, str]:
    """``(positions, slots)`` INT64 of the id tensor ``x`` whose axis 1 holds the columns ``segs``.

    ``trailing``: axes after the column axis (0 for ``ids [B, C]``, 1 for ``multi [B, M, L]``:
    per-column constants ``[M, 1]`` broadcast over contiguous lists, which onnxruntime runs fast).
    Columns of different ways are computed apart and put back in their own order.
    """
    ways = [s.way for s in segs]
    if len(set(ways)) == 1:
        return _one_way(g, x, segs, where, (len(segs),) + (1,) * trailing)
    parts: list[tuple[str, str]] = []
    order: list[int] = []
    for way in ("direct", "hashed", "searched"):
        cols = [i for i, w in enumerate(ways) if w == way]
        if cols:
            sub = g.op("Gather", [x, g.ints(f"{where}/{way}_columns", cols)], f"{where}/{way}_ids", axis=1)
            parts.append(
                _one_way(g, sub, [segs[i] for i in cols], f"{where}/{way}", (len(cols),) + (1,) * trailing)
            )
            order += cols
    back = g.ints(f"{where}/own_order", np.argsort(np.array(order)).tolist())
    out = []
    for k, what in enumerate(("positions", "slots")):
        joined = g.op("Concat", [p[k] for p in parts], f"{where}/{what}_by_way", axis=1)
        out.append(g.op("Gather", [joined, back], f"{where}/{what}", axis=1))
    return out[0], out[1]


def _one_way(
    g: GraphBuilder, x: str, segs: list[Segment], where: str, shape: tuple[int, ...]
) -> tuple[str, str]:
    def per_column(name: str, values: list[int], dtype: type) -> str:
        return g.const(f"{where}/{name}", np.array(values, dtype=dtype).reshape(shape))

    way = segs[0].way
    if way == "direct":  # min(uint64(id + 1), size - 1): the IdMap clamp
        u = g.op("Cast", [g.op("Add", [x, g.ints(f"{where}/one", 1)], f"{where}/id_plus_1")], f"{where}/as_uint64",
                 to=TensorProto.UINT64)  # fmt: skip
        clamped = g.op(
            "Min", [u, per_column("last", [s.size - 1 for s in segs], np.uint64)], f"{where}/clamp"
        )
        pos = g.op("Cast", [clamped], f"{where}/positions", to=TensorProto.INT64)
    else:
        h = mix64_nodes(g, g.op("Cast", [x], f"{where}/as_uint64", to=TensorProto.UINT64), where)
        b = g.op("Mod", [h, per_column("buckets", [s.buckets for s in segs], np.uint64)], f"{where}/bucket")
        b = g.op("Cast", [b], f"{where}/bucket_int64", to=TensorProto.INT64)
        if way == "hashed":  # missing ? PAD_ROW : 2 + bucket
            missing = g.op("Equal", [x, g.ints(f"{where}/minus_one", -1)], f"{where}/missing")
            row = g.op("Add", [b, g.ints(f"{where}/two", FIRST_ID_ROW)], f"{where}/row")
            pos = g.op("Where", [missing, g.ints(f"{where}/pad", PAD_ROW), row], f"{where}/positions")
        else:  # searched: the position stored with this id in bucket base + bucket, else 0
            b = g.op("Add", [b, per_column("base", [s.base for s in segs], np.int64)], f"{where}/bucket_at")
            keys = g.op("Gather", ["hash_keys", b], f"{where}/bucket_keys")  # [..., width]
            found = g.op("Gather", ["hash_positions", b], f"{where}/bucket_positions")
            x1 = g.op("Unsqueeze", [x, g.ints(f"{where}/last_axis", [-1])], f"{where}/ids_1")
            hit = g.op("Where", [g.op("Equal", [keys, x1], f"{where}/match"), found, g.ints(f"{where}/none", 0)],
                       f"{where}/hit")  # fmt: skip
            pos = g.op("ReduceMax", [hit, g.ints(f"{where}/entries", [-1])], f"{where}/positions", keepdims=0)
    return pos, g.op("Add", [pos, per_column("start", [s.start for s in segs], np.int64)], f"{where}/slots")
