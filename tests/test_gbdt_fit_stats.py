"""The GBDT featurizer fitted partition by partition (what each Dask task computes) equals the
single-process fit: same ids, frequencies, attribute maps and encodings, same training matrix."""

from __future__ import annotations

import itertools

import numpy as np
from test_gbdt import CFG, SCHEMA, make_split

from recdistill.data.batch import RawBatch
from recdistill.students.gbdt.features import GbdtFeaturizer
from recdistill.students.gbdt.fit_stats import FitRows, fit_encoders


def _slice(raw: RawBatch, a: int, b: int) -> RawBatch:
    return RawBatch(raw.dense[a:b], raw.ids[a:b], raw.multi[a:b])


def test_partitioned_fit_equals_single_process_fit() -> None:
    raw, t, p = make_split(3000, 10)
    groups = t.request_id.copy()
    groups[::7] = -1  # rows without a request are folded by their global position
    labels = t.label.astype(np.float64)
    labels[::11] = np.nan  # unlabelled (transfer) rows count for the teacher encodings only
    values = {"click": labels, "teacher": p.astype(np.float64)}
    single, X = GbdtFeaturizer.fit_transform(SCHEMA, raw, labels=labels.astype(np.float32),
                                             teacher_probs=p, groups=groups, cfg=CFG)  # fmt: skip
    cuts = [0, 700, 1901, 3000]  # uneven partitions
    parts = [
        FitRows(_slice(raw, a, b), {k: v[a:b] for k, v in values.items()}, groups[a:b], offset=a)
        for a, b in itertools.pairwise(cuts)
    ]
    fit = fit_encoders(SCHEMA, parts, CFG)
    feat = GbdtFeaturizer(SCHEMA, fit.dense, fit.categorical, fit.multi)
    assert feat.feature_names == single.feature_names
    assert any(m.attributes for m in feat.multi)  # the item -> category map was found from merged pairs
    for c, d in zip(single.categorical, feat.categorical, strict=True):
        assert c.native == d.native
        np.testing.assert_array_equal(c.freq, d.freq)
    encoders = zip((*single.categorical, *single.multi), (*feat.categorical, *feat.multi), strict=True)
    for a, b in encoders:
        np.testing.assert_array_equal(a.id_map.keys, b.id_map.keys)
        assert a.means.keys() == b.means.keys()
        for k in a.means:
            np.testing.assert_allclose(a.means[k].full, b.means[k].full, rtol=1e-12)
    X_parts = np.concatenate([feat.training_matrix(r.raw, fit.out_of_fold(r)) for r in parts])
    np.testing.assert_allclose(X_parts, X, rtol=1e-6, equal_nan=True)
    valid = make_split(500, 100)[0]
    np.testing.assert_allclose(feat.transform(valid), single.transform(valid), rtol=1e-6, equal_nan=True)
