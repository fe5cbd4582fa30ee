"""``GbdtFeaturizer`` table path (what ``transform`` runs) equals the per-feature reference bit for bit.

Data: the privileged world of ``tests/test_gbdt.py`` with missing, unseen, huge (hashed-string
sized) and int64-max ids, empty history lists, 0/1-row batches; featurizers with and without
teacher encodings, native categoricals and history features, and ids so large that every encoder
falls back to sorted search.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recdistill.config.gbdt import GbdtStudentConfig
from recdistill.data.batch import MISSING_ID, RawBatch, Targets
from recdistill.data.idmap import IdMap
from recdistill.errors import DataError
from recdistill.students.gbdt import encoding as enc
from recdistill.students.gbdt.features import GbdtFeaturizer
from tests.test_gbdt import CFG, SCHEMA, make_split

BIG = np.int64(1) << 50  # ids past every direct table, like hashed strings


def _fit(
    raw: RawBatch, t: Targets, p: np.ndarray | None, cfg: GbdtStudentConfig = CFG
) -> tuple[GbdtFeaturizer, np.ndarray]:
    return GbdtFeaturizer.fit_transform(
        SCHEMA, raw, labels=t.label, teacher_probs=p, groups=t.request_id, cfg=cfg
    )


def _hashed(raw: RawBatch) -> RawBatch:
    """The same rows with every id mapped to a huge id (missing stays missing)."""

    def big(x: np.ndarray) -> np.ndarray:
        return np.where(x == MISSING_ID, MISSING_ID, x * np.int64(2654435761) + BIG)

    return RawBatch(raw.dense, big(raw.ids), big(raw.multi))


def _perturb(raw: RawBatch, seed: int) -> RawBatch:
    """~10% missing, ~5% unseen small ids, ~3% huge, ~2% int64 max; some empty histories; NaNs."""
    rng = np.random.default_rng(seed)

    def ids(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        u = rng.random(x.shape)
        x[u < 0.10] = MISSING_ID
        m = (u >= 0.10) & (u < 0.15)
        x[m] = rng.integers(0, 5_000, size=int(m.sum()))
        m = (u >= 0.95) & (u < 0.98)
        x[m] = rng.integers(BIG, 2 * BIG, size=int(m.sum()))
        x[u >= 0.98] = np.iinfo(np.int64).max
        return x

    dense = raw.dense.copy()
    dense[rng.random(dense.shape) < 0.1] = np.nan
    multi = ids(raw.multi)
    multi[rng.random(len(raw)) < 0.2] = MISSING_ID  # empty lists
    return RawBatch(dense, ids(raw.ids), multi)


def assert_same(feat: GbdtFeaturizer, raw: RawBatch) -> np.ndarray:
    fast = feat.transform(raw)
    ref = feat._transform_reference(raw, None)
    assert fast.dtype == ref.dtype == np.float32 and fast.shape == ref.shape == (len(raw), feat.n_features)
    assert fast.tobytes() == ref.tobytes()  # bit for bit, NaNs included
    return fast


@pytest.fixture(scope="module")
def split() -> tuple[RawBatch, Targets, np.ndarray]:
    return make_split(1600, 11)


@pytest.fixture(scope="module")
def test_raw() -> RawBatch:
    return make_split(600, 12)[0]


CONFIGS = {
    "default": CFG,
    "all_native": replace(CFG, max_cat_levels=10_000),  # item becomes a native categorical
    "no_history": replace(CFG, history_match=False),
    "min_count": replace(CFG, min_id_count=5),  # many ids unseen
}


@pytest.mark.parametrize("teacher", [True, False])
@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
def test_transform_equals_reference(
    split: tuple[RawBatch, Targets, np.ndarray], test_raw: RawBatch, teacher: bool, cfg_name: str
) -> None:
    raw, t, p = split
    feat, _ = _fit(raw, t, p if teacher else None, CONFIGS[cfg_name])
    assert not feat._fast.cat_fallback and all(m.state is not None for m in feat._fast.multi)
    for seed in range(3):
        X = assert_same(feat, _perturb(test_raw, seed))
        assert np.isnan(X).any() and (X == 0).any()
    X = assert_same(feat, test_raw)
    if cfg_name == "default":
        names = feat.feature_names
        assert (X[:, names.index("hist__has_item")] > 0).any() and (
            X[:, names.index("hist__same_cat")] > 0
        ).any()
        assert (X[:, names.index("hist__len")] == 0).any()


def test_reference_with_dict_lookups_equals_fast_path(
    split: tuple[RawBatch, Targets, np.ndarray], test_raw: RawBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference with every id looked up one at a time (``IdMap.lookup_reference``), which
    shares no table or search with the fast path, gives the fast path's bits."""
    raw, t, p = split
    for r in (raw, _hashed(raw)):
        feat, _ = _fit(r, t, p)
        batches = [_perturb(test_raw, 4), _perturb(_hashed(test_raw), 6)]
        fast = [feat.transform(b) for b in batches]
        with monkeypatch.context() as mp:
            mp.setattr(IdMap, "lookup", IdMap.lookup_reference)
            for b, X in zip(batches, fast, strict=True):
                assert feat._transform_reference(b, None).tobytes() == X.tobytes()


def test_fit_transform_out_of_fold_matrix_equals_reference(
    split: tuple[RawBatch, Targets, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, t, p = split
    feat, X = _fit(raw, t, p)
    monkeypatch.setattr(GbdtFeaturizer, "_transform", GbdtFeaturizer._transform_reference)
    _, X_ref = _fit(raw, t, p)
    assert X.tobytes() == X_ref.tobytes()
    # the out-of-fold columns really differ from what transform gives (full-training encodings)
    col = feat.feature_names.index("item__te_click")
    assert not np.array_equal(X[:, col], feat.transform(raw)[:, col])


def test_huge_ids_fall_back_to_search(
    split: tuple[RawBatch, Targets, np.ndarray], test_raw: RawBatch
) -> None:
    raw, t, p = split
    feat, X = _fit(_hashed(raw), t, p)
    assert len(feat._fast.cat_fallback) == len(feat.categorical)
    assert all(m.state is None for m in feat._fast.multi)
    small, _ = _fit(raw, t, p)
    assert X.tobytes() == _fit(raw, t, p)[1].tobytes()  # same statistics whatever the id values
    for r in (_hashed(test_raw), _perturb(_hashed(test_raw), 5), test_raw):
        assert_same(feat, r)
    np.testing.assert_array_equal(feat.transform(_hashed(test_raw)), small.transform(test_raw))


def test_sum_fallback_and_tiny_batches(
    split: tuple[RawBatch, Targets, np.ndarray], test_raw: RawBatch
) -> None:
    raw, t, p = split
    feat, _ = _fit(raw, t, p)
    for rows in (0, 1, 2):
        for start in (0, 5):
            X = assert_same(feat, _perturb(test_raw, 9).slice(start, start + rows))
            assert X.shape == (rows, feat.n_features)
    for m in feat._fast.multi:
        m.exact_sum = False  # the per-target np.sum path, used when numpy's order is not the emulated one
    assert_same(feat, _perturb(test_raw, 1))


def test_errors_are_the_references(split: tuple[RawBatch, Targets, np.ndarray], test_raw: RawBatch) -> None:
    raw, t, p = split
    feat, _ = _fit(raw, t, p)
    bad = test_raw.ids.copy()
    bad[4, 2] = -3
    with pytest.raises(DataError, match="feature 'ctx': 1 negative ids"):
        feat.transform(RawBatch(test_raw.dense, bad, test_raw.multi))
    bad_multi = test_raw.multi.copy()
    bad_multi[1, 1, 0] = -4  # teacher-only history: never read, no error, same output
    assert_same(feat, RawBatch(test_raw.dense, test_raw.ids, bad_multi))
    bad_multi[1, 0, 2] = -4
    with pytest.raises(DataError, match="feature 'hist': 1 negative ids"):
        feat.transform(RawBatch(test_raw.dense, test_raw.ids, bad_multi))
    with pytest.raises(DataError, match=r"multi: expected shape"):
        feat.transform(RawBatch(test_raw.dense, test_raw.ids, test_raw.multi[:, :, :3]))


def test_save_load_builds_the_same_tables(
    split: tuple[RawBatch, Targets, np.ndarray], test_raw: RawBatch, tmp_path: Path
) -> None:
    raw, t, p = split
    feat, _ = _fit(raw, t, p)
    feat.save(tmp_path / "feat")
    assert sorted(f.name for f in (tmp_path / "feat").iterdir()) == ["arrays", "gbdt_featurizer.json"]
    loaded = GbdtFeaturizer.load(tmp_path / "feat")
    r = _perturb(test_raw, 3)
    assert loaded.transform(r).tobytes() == feat.transform(r).tobytes()
    assert_same(loaded, r)


@pytest.mark.parametrize("length", [*range(0, 18), 20, 50, 127, 128, 129, 300])
def test_pairwise_sum_is_numpys_order(length: int) -> None:
    rng = np.random.default_rng(length)
    v = rng.standard_normal((3, 40, length)) * 10.0 ** rng.integers(-9, 9, size=(3, 40, length))
    assert np.array_equal(enc.pairwise_sum(np.moveaxis(v, 2, 0)), v.sum(axis=2))
    assert enc.sum_order_matches(length)


def test_demo_artefact_on_disk() -> None:
    """A featurizer written before the table path (runs/demo, when present) loads and agrees."""
    demo = Path(__file__).resolve().parents[1] / "runs" / "demo"
    path = demo / "students" / "gbdt_distilled" / "featurizer"
    if not (path / "gbdt_featurizer.json").is_file() or not (demo / "data" / "test.parquet").is_file():
        pytest.skip("runs/demo not built")
    from recdistill.data.raw import raw_batch_from_frame

    feat = GbdtFeaturizer.load(path)
    r = raw_batch_from_frame(pl.read_parquet(demo / "data" / "test.parquet", n_rows=512), feat.schema)
    assert_same(feat, r)
    assert_same(feat, _perturb(r, 0))
