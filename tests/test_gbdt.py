"""GBDT student: featurizer, out-of-fold encodings, soft-label training, compiled export, serving.

Data: a tiny privileged-features world built here (seeded numpy). The click logit uses a
``teacher_only`` feature (``secret``); the "teacher" is the true click probability, so it knows
what the student cannot see, and distilling it must beat the hard-label twin.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from recdistill.config.gbdt import GbdtStudentConfig
from recdistill.config.loader import from_mapping
from recdistill.data.batch import RawBatch, Targets
from recdistill.data.contract import InputContract
from recdistill.data.folds import assign_folds
from recdistill.data.preprocess import Preprocessor
from recdistill.data.schema import Schema
from recdistill.errors import ArtefactError, ConfigError, DataError
from recdistill.export.gbdt_compile import CompilerUnavailableError, compile_gbdt
from recdistill.export.gbdt_version import EXPORT_FILE, write_gbdt_version
from recdistill.metrics import auc
from recdistill.predictors.gbdt import GBDT_COMPILED, GBDT_LIGHTGBM, LIB_FILE
from recdistill.predictors.registry import load_predictor
from recdistill.students.gbdt.encoding import fit_mean_encoding, functional_map
from recdistill.students.gbdt.features import GbdtFeaturizer
from recdistill.students.gbdt.train import FEATURIZER_DIR, MODEL_FILE, TransferRows, train_gbdt

SCHEMA = Schema.from_dict(
    {
        "label": "click",
        "row_key": "row_id",
        "request_id": "request_id",
        "user_id": None,
        "features": [
            {"name": "x1", "kind": "dense"},
            {"name": "item", "kind": "categorical", "group": "item"},
            {"name": "x2", "kind": "dense"},
            {"name": "cat", "kind": "categorical", "group": "item"},
            {"name": "ctx", "kind": "categorical"},
            {"name": "hist", "kind": "multi", "group": "user", "max_len": 5, "vocab_from": "item"},
            {"name": "secret", "kind": "dense", "teacher_only": True},
            {"name": "secret_hist", "kind": "multi", "max_len": 3, "teacher_only": True},
        ],
    },
    source="test_gbdt",
)
N_ITEMS = 300
CFG = GbdtStudentConfig(
    alpha=0.2,
    num_boost_round=100,
    num_leaves=15,
    min_data_in_leaf=20,
    learning_rate=0.1,
    early_stopping_rounds=10,
)


def make_split(n: int, seed: int) -> tuple[RawBatch, Targets, np.ndarray]:
    """``n`` rows (16 per request) of the privileged world; returns raw, targets, true probability."""
    world = np.random.default_rng(123)
    item_eff = world.normal(0.0, 0.7, N_ITEMS)
    item_cat = world.integers(0, 20, N_ITEMS)  # item -> category, a function the featurizer should find
    ctx_eff = world.normal(0.0, 0.5, 8)
    pop = 1.0 / (np.arange(N_ITEMS) + 5.0)
    pop /= pop.sum()
    rng = np.random.default_rng(seed)
    item = rng.choice(N_ITEMS, size=n, p=pop)
    x1, x2 = rng.normal(size=n), 2.0 * rng.normal(size=n)
    x2_seen = np.where(rng.random(n) < 0.1, np.nan, x2)
    ctx = np.repeat(rng.integers(0, 8, size=(n + 15) // 16), 16)[:n]
    length = rng.integers(0, 6, size=n)
    hist = rng.choice(N_ITEMS, size=(n, 5), p=pop)
    hist[:, 0] = np.where((rng.random(n) < 0.2) & (length > 0), item, hist[:, 0])
    hist = np.where(np.arange(5)[None, :] < length[:, None], hist, -1)
    in_hist = (hist == item[:, None]).any(axis=1)
    secret = rng.normal(size=n)
    z = -2.0 + 0.8 * x1 + 0.5 * np.sin(x2) + item_eff[item] + ctx_eff[ctx] + 0.6 * in_hist + 1.5 * secret
    p = 1.0 / (1.0 + np.exp(-z))
    y = (rng.random(n) < p).astype(np.float32)
    multi = np.full((n, 2, 5), -1, dtype=np.int64)
    multi[:, 0, :] = hist
    multi[:, 1, :3] = rng.integers(0, 50, size=(n, 3))
    raw = RawBatch(
        dense=np.stack([x1, x2_seen, secret], axis=1).astype(np.float32),
        ids=np.stack([item, item_cat[item], ctx], axis=1).astype(np.int64),
        multi=multi,
    )
    targets = Targets(
        row_key=np.arange(n, dtype=np.int64) + seed * 1_000_000,
        label=y,
        request_id=(np.arange(n) // 16 + seed * 1_000_000).astype(np.int64),
        user_id=np.full(n, -1, dtype=np.int64),
        true_ctr=p.astype(np.float32),
    )
    return raw, targets, p.astype(np.float32)


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[RawBatch, Targets, np.ndarray]]:
    return {"train": make_split(3000, 10), "valid": make_split(2000, 100), "test": make_split(8000, 200)}


def _train(
    data: dict[str, Any], out: Path, *, hard: bool, cfg: GbdtStudentConfig = CFG, **kw: Any
) -> dict[str, Any]:
    (tr, tr_t, tr_p), (va, va_t, va_p) = data["train"], data["valid"]
    return train_gbdt(
        schema=SCHEMA,
        train_raw=tr,
        train_targets=tr_t,
        valid_raw=va,
        valid_targets=va_t,
        teacher_probs=tr_p,
        cfg=cfg,
        hard=hard,
        out_dir=out,
        valid_teacher_probs=va_p,
        **kw,
    )


@pytest.fixture(scope="module")
def trained(data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gbdt")
    _train(data, root / "distilled", hard=False)
    _train(data, root / "hard", hard=True)
    return {"distilled": root / "distilled", "hard": root / "hard", "root": root}


def _fit(
    raw: RawBatch, t: Targets, p: np.ndarray | None, cfg: GbdtStudentConfig = CFG
) -> tuple[GbdtFeaturizer, Any]:
    return GbdtFeaturizer.fit_transform(
        SCHEMA, raw, labels=t.label, teacher_probs=p, groups=t.request_id, cfg=cfg
    )


# -- featurizer ------------------------------------------------------------------------------------
def test_feature_set_uses_serving_features_only(data: dict[str, Any]) -> None:
    raw, t, p = data["train"]
    feat, X = _fit(raw, t, p)
    assert feat.feature_names == [
        "x1",
        "x2",
        "item__freq",
        "item__te_click",
        "item__te_teacher",
        "cat__freq",
        "cat__cat",
        "ctx__freq",
        "ctx__cat",
        "hist__len",
        "hist__te_click",
        "hist__te_teacher",
        "hist__has_item",
        "hist__same_cat",
    ]
    assert not any("secret" in n for n in feat.feature_names)
    assert X.dtype == np.float32 and X.shape == (len(raw), feat.n_features)
    # changing teacher_only inputs changes nothing
    noisy = RawBatch(raw.dense.copy(), raw.ids, raw.multi.copy())
    noisy.dense[:, 2] = 99.0
    noisy.multi[:, 1, :] = 7
    np.testing.assert_array_equal(feat.transform(noisy), feat.transform(raw))
    # hard twin: no teacher encodings
    hard_feat, _ = _fit(raw, t, None)
    assert not any("teacher" in n for n in hard_feat.feature_names)


def test_featurizer_deterministic_and_save_load_round_trip(data: dict[str, Any], tmp_path: Path) -> None:
    raw, t, p = data["train"]
    f1, X1 = _fit(raw, t, p)
    f2, X2 = _fit(raw, t, p)
    np.testing.assert_array_equal(X1, X2)
    va = data["valid"][0]
    f1.save(tmp_path / "feat")
    loaded = GbdtFeaturizer.load(tmp_path / "feat")
    assert loaded.feature_names == f1.feature_names
    assert loaded.categorical_features == f1.categorical_features == [6, 8]
    np.testing.assert_array_equal(loaded.transform(va), f2.transform(va))
    # a corrupted array is caught at load
    arr = tmp_path / "feat" / "arrays" / "cat0_freq.npy"
    np.save(arr, np.zeros(3))
    with pytest.raises(ArtefactError, match="cat0_freq"):
        GbdtFeaturizer.load(tmp_path / "feat")
    # ... and so are ids that are not sorted (every lookup assumes they are)
    f1.save(tmp_path / "feat2")
    keys = tmp_path / "feat2" / "arrays" / "cat0_keys.npy"
    np.save(keys, np.load(keys)[::-1].copy())
    with pytest.raises(ArtefactError, match="cat0_keys.npy: IdMap keys: not sorted"):
        GbdtFeaturizer.load(tmp_path / "feat2")


def test_unseen_missing_and_history_features() -> None:
    raw, t, p = make_split(512, 3)
    feat, _ = _fit(raw, t, p)
    idx = {n: i for i, n in enumerate(feat.feature_names)}
    c = feat.categorical[0]  # item
    ids = np.array([[N_ITEMS + 5, 0, 1], [-1, -1, -1], [7, 4, 2]], dtype=np.int64)
    cat7 = int(raw.ids[raw.ids[:, 0] == 7, 1][0]) if (raw.ids[:, 0] == 7).any() else 4
    ids[2, 1] = cat7
    multi = np.full((3, 2, 5), -1, dtype=np.int64)
    multi[2, 0, :3] = [7, 7, N_ITEMS + 9]  # candidate twice in history, one unseen member
    X = feat.transform(RawBatch(np.zeros((3, 3), np.float32), ids, multi))
    assert X[0, idx["item__freq"]] == 0.0  # unseen id
    assert X[0, idx["item__te_click"]] == pytest.approx(c.means["click"].prior, rel=1e-6)
    assert np.isnan(X[1, idx["item__freq"]]) and np.isnan(X[1, idx["item__te_click"]])  # missing
    assert np.isnan(X[1, idx["cat__cat"]]) and np.isnan(X[1, idx["hist__te_click"]])
    assert X[1, idx["hist__len"]] == 0 and X[2, idx["hist__len"]] == 3
    assert X[2, idx["hist__has_item"]] == 2
    assert X[2, idx["hist__same_cat"]] == 2  # both 7s share item 7's category; the unseen one has none
    with pytest.raises(DataError, match="negative ids"):
        feat.transform(RawBatch(np.zeros((1, 3), np.float32), np.array([[-5, 0, 0]]), np.full((1, 2, 5), -1)))
    with pytest.raises(DataError, match="dense"):
        feat.transform(RawBatch(np.zeros((1, 2), np.float32), ids[:1], multi[:1]))


def test_oof_encoding_never_uses_the_rows_own_label() -> None:
    raw, t, p = make_split(2000, 4)
    cfg = replace(CFG, smoothing=5.0)
    feat, X = _fit(raw, t, p, cfg)
    names = feat.feature_names
    label_cols = [names.index(n) for n in ("item__te_click", "hist__te_click")]
    teacher_cols = [names.index(n) for n in ("item__te_teacher", "hist__te_teacher")]
    row = int(np.argmax((raw.ids[:, 0] == raw.ids[0, 0]) & (raw.multi[:, 0, 0] >= 0)))
    flipped_y = t.label.copy()
    flipped_y[row] = 1.0 - flipped_y[row]
    flipped_p = p.copy()
    flipped_p[row] = 1.0 - flipped_p[row]
    feat2, X2 = GbdtFeaturizer.fit_transform(
        SCHEMA, raw, labels=flipped_y, teacher_probs=flipped_p, groups=t.request_id, cfg=cfg
    )
    # the row's own encodings are unchanged, although its id's full-train encoding moved
    np.testing.assert_array_equal(X2[row, label_cols + teacher_cols], X[row, label_cols + teacher_cols])
    assert not np.array_equal(
        feat2.transform(raw.slice(row, row + 1)), feat.transform(raw.slice(row, row + 1))
    )
    # rows of the same id in another fold do see the flip
    fold = assign_folds(t.request_id, len(raw), cfg.oof_folds)
    same_id = (raw.ids[:, 0] == raw.ids[row, 0]) & (fold != fold[row])
    assert same_id.any()
    assert not np.array_equal(X2[same_id, label_cols[0]], X[same_id, label_cols[0]])


def test_oof_on_a_constructed_case() -> None:
    # two folds; id 0 has rows in both folds; id 1 only in fold 0
    idx = np.array([0, 0, 0, 1])
    values = np.array([1.0, 0.0, 1.0, 1.0])
    fold = np.array([0, 0, 1, 0])
    enc, oof = fit_mean_encoding(idx, values, fold, n_keys=2, n_folds=2, smoothing=0.0)
    np.testing.assert_allclose(enc.full, [2 / 3, 1.0])
    assert enc.prior == pytest.approx(0.75)
    # rows of fold 0 only see row 2 (value 1); row 2 (fold 1) sees rows 0,1 of id 0 (mean 0.5)
    # id 1 has no out-of-fold rows -> the out-of-fold prior of fold 0 (row 2 only: 1.0)
    np.testing.assert_allclose(oof, [1.0, 1.0, 0.5, 1.0])
    folds = assign_folds(np.array([5, 5, 5, 9, 9]), 5, 3)
    assert folds[0] == folds[1] == folds[2] and folds[3] == folds[4]


def test_functional_map_finds_item_to_category_only() -> None:
    raw, _, _ = make_split(3000, 5)
    found = functional_map(raw.ids[:, 0], raw.ids[:, 1], min_purity=0.99)
    assert found is not None and found[0].size == np.unique(raw.ids[:, 0]).size
    assert functional_map(raw.ids[:, 0], raw.ids[:, 2], min_purity=0.99) is None  # context is not
    assert functional_map(raw.ids[:, 1], raw.ids[:, 0], min_purity=0.99) is None  # finer, not coarser


# -- training --------------------------------------------------------------------------------------
def test_distilled_beats_hard_twin_on_privileged_data(data: dict[str, Any], trained: dict[str, Path]) -> None:
    te, te_t, _ = data["test"]
    scores = {}
    for name in ("distilled", "hard"):
        metrics = json.loads((trained[name] / "metrics.json").read_text())
        assert metrics["objective"] == "cross_entropy" and metrics["best_iteration"] >= 1
        booster = lgb.Booster(model_file=str(trained[name] / MODEL_FILE))
        feat = GbdtFeaturizer.load(trained[name] / FEATURIZER_DIR)
        assert booster.num_trees() == metrics["best_iteration"]
        scores[name] = auc(te_t.label, booster.predict(feat.transform(te)))
    assert json.loads((trained["hard"] / "metrics.json").read_text())["label"] == "label = y"
    # measured: +0.019..+0.029 over five seeds
    assert scores["distilled"] > scores["hard"] + 0.005, scores


def test_soft_labels_and_transfer_rows(data: dict[str, Any], tmp_path: Path) -> None:
    xf_raw, xf_t, xf_p = make_split(1000, 300)
    xf_t = replace(xf_t, label=np.full(len(xf_t), np.nan, np.float32))
    cfg = replace(CFG, num_boost_round=10)
    m = _train(data, tmp_path / "m", hard=False, cfg=cfg, transfer=TransferRows(xf_raw, xf_t, xf_p))
    assert m["transfer_rows"] == 1000 and m["label"] == "label = 0.2 * y + 0.8 * p_teacher"
    hard = _train(data, tmp_path / "h", hard=True, cfg=cfg, transfer=TransferRows(xf_raw, xf_t, xf_p))
    assert hard["transfer_rows"] == 0  # the hard twin never reads the teacher
    bad = data["train"][2].copy()
    bad[3] = np.nan
    with pytest.raises(DataError, match="teacher_probs"):
        train_gbdt(
            schema=SCHEMA,
            train_raw=data["train"][0],
            train_targets=data["train"][1],
            valid_raw=data["valid"][0],
            valid_targets=data["valid"][1],
            teacher_probs=bad,
            cfg=cfg,
            hard=False,
            out_dir=tmp_path / "bad",
        )
    assert not (tmp_path / "bad").exists()


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="alpha"):
        GbdtStudentConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="num_leave"):
        from_mapping(GbdtStudentConfig, {"num_leave": 3}, source="x.yaml", where="gbdt")


# -- export and serving ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def version(trained: dict[str, Path], data: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    out = trained["root"] / "version"
    record = write_gbdt_version(out, model_dir=trained["distilled"], parity_raw=data["valid"][0])
    return out, record


def test_compiled_version_matches_booster(
    version: tuple[Path, dict[str, Any]], trained: dict[str, Path], data: dict[str, Any]
) -> None:
    out, record = version
    assert record["kind"] == GBDT_COMPILED and record["fallback_reason"] is None
    assert record["compile_parity_max_abs_diff"] <= 1e-6 and record["served_parity_max_abs_diff"] <= 1e-6
    assert json.loads((out / "predictor.json").read_text()) == {"kind": GBDT_COMPILED}
    assert (out / LIB_FILE).is_file() and (out / EXPORT_FILE).is_file()
    te = data["test"][0]
    predictor = load_predictor(out, contract=InputContract.from_schema(SCHEMA))
    got = predictor.predict(te)
    booster = lgb.Booster(model_file=str(trained["distilled"] / MODEL_FILE))
    want = booster.predict(GbdtFeaturizer.load(trained["distilled"] / FEATURIZER_DIR).transform(te))
    assert got.dtype == np.float32 and got.shape == (len(te),)
    assert float(np.max(np.abs(got - want))) <= 1e-6
    assert predictor.predict(te.slice(0, 0)).shape == (0,)
    other = InputContract(n_dense=2, n_ids=3, n_multi=2, max_len=5)
    with pytest.raises(ArtefactError, match="input contract"):
        load_predictor(out, contract=other)


def test_fallback_to_lightgbm_without_compiler(
    trained: dict[str, Path], data: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "v"
    record = write_gbdt_version(
        out, model_dir=trained["hard"], parity_raw=data["valid"][0], toolchain="no-such-compiler-xyz"
    )
    assert record["kind"] == GBDT_LIGHTGBM and "no-such-compiler-xyz" in record["fallback_reason"]
    assert not (out / LIB_FILE).exists()
    predictor = load_predictor(out)
    te = data["test"][0]
    booster = lgb.Booster(model_file=str(trained["hard"] / MODEL_FILE))
    want = booster.predict(GbdtFeaturizer.load(trained["hard"] / FEATURIZER_DIR).transform(te))
    np.testing.assert_allclose(predictor.predict(te), want, atol=1e-6)
    with pytest.raises(CompilerUnavailableError, match="not found"):
        compile_gbdt(
            out / MODEL_FILE,
            tmp_path / "so",
            parity_features=np.zeros((1, 12), np.float32),
            toolchain="nope-cc",
        )


def test_parity_guard_leaves_no_library(
    trained: dict[str, Path], data: dict[str, Any], tmp_path: Path
) -> None:
    small = tmp_path / "small"
    cfg = replace(CFG, num_boost_round=3, early_stopping_rounds=3)
    _train(data, small, hard=True, cfg=cfg)
    X = GbdtFeaturizer.load(small / FEATURIZER_DIR).transform(data["valid"][0])
    built = compile_gbdt(small / MODEL_FILE, tmp_path / "ok", parity_features=X)
    assert built.num_trees == 3 and built.parity_max_abs_diff <= 1e-6 and built.lib_path.is_file()
    with pytest.raises(ArtefactError, match="disagrees"):  # a tolerance no build can meet
        compile_gbdt(small / MODEL_FILE, tmp_path / "bad", parity_features=X, tolerance=-1.0)
    assert not (tmp_path / "bad" / LIB_FILE).exists()
    with pytest.raises(ArtefactError, match="features"):
        compile_gbdt(small / MODEL_FILE, tmp_path / "bad", parity_features=X[:, :3])


# -- command ---------------------------------------------------------------------------------------
def _soft_labels(data_dir: Path, out: Path, schema: Schema) -> None:
    out.mkdir()
    rows = {}
    for split in ("train", "valid", "test"):
        df = pl.read_parquet(data_dir / f"{split}.parquet")
        rng = np.random.default_rng(len(split))
        logit = (rng.normal(size=df.height) + 2.0 * df.get_column("score").to_numpy()).astype(np.float32)
        pl.DataFrame(
            {
                schema.row_key: df.get_column(schema.row_key),
                "teacher_logit": logit,
                "teacher_prob": (1 / (1 + np.exp(-logit))).astype(np.float32),
            }
        ).write_parquet(out / f"{split}.parquet")
        rows[split] = {"rows": df.height}
    (out / "manifest.json").write_text(
        json.dumps({"teacher_hash": "abc123", "row_key": "row_id", "splits": rows})
    )


def test_distill_gbdt_command(
    tiny_data: Path, tiny_schema: Schema, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import tiny_frame

    from recdistill.commands import distill_gbdt

    pre_dir = tmp_path / "pre"
    Preprocessor.fit(tiny_data / "train.parquet", tiny_schema).save(pre_dir)
    _soft_labels(tiny_data, tmp_path / "soft", tiny_schema)
    tiny_frame(64, seed=9).with_columns(pl.lit(None, dtype=pl.Int8).alias("click")).write_parquet(
        tiny_data / "transfer.parquet"
    )
    (tmp_path / "c.yaml").write_text("gbdt:\n  min_data_in_leaf: 5\n  num_boost_round: 8\n  num_leaves: 4\n")
    parser = argparse.ArgumentParser()
    distill_gbdt.register(parser.add_subparsers())
    common = ["--data", str(tiny_data), "--preprocess", str(pre_dir), "--config", str(tmp_path / "c.yaml")]
    args = parser.parse_args(
        ["distill-gbdt", *common, "--soft-labels", str(tmp_path / "soft"), "--out", str(tmp_path / "gbdt")]
    )
    assert args.func(args) == 0
    assert "no soft labels" in capsys.readouterr().out  # the transfer split was not scored
    metrics = json.loads((tmp_path / "gbdt" / "metrics.json").read_text())
    assert metrics["teacher_hash"] == "abc123" and metrics["config"]["num_leaves"] == 4
    assert metrics["transfer_rows"] == 0
    assert not any("secret" in n for n in metrics["feature_names"])
    args = parser.parse_args(["distill-gbdt", *common, "--hard", "--out", str(tmp_path / "hard")])
    assert args.func(args) == 0
    assert (tmp_path / "hard" / MODEL_FILE).is_file() and not (tmp_path / "hard" / "predictor.json").exists()
    # soft labels from another teacher are refused
    shutil.copytree(tmp_path / "soft", tmp_path / "soft2")
    args = parser.parse_args(
        [
            "distill-gbdt",
            *common,
            "--soft-labels",
            str(tmp_path / "soft2"),
            "--teacher-hash",
            "zzz",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    with pytest.raises(ArtefactError, match="teacher"):
        args.func(args)
