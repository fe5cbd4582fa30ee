"""The GBDT student on Dask: trained on a 2-worker LocalCluster (127.0.0.1, one thread each) from
Parquet partitions and sharded soft labels, it has the single-process student's artefact shape,
parameters and quality, exports through ``write_gbdt_version`` and serves through the predictor
registry; a scheduler that does not answer fails within the timeout; the iteration rule is
LightGBM's early stopping."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from conftest import TINY_SCHEMA, tiny_frame

from recdistill.config.gbdt import GbdtDistributedConfig, GbdtStudentConfig
from recdistill.config.loader import from_mapping
from recdistill.data.preprocess import Preprocessor
from recdistill.data.raw import raw_batch_from_frame
from recdistill.data.schema import Schema
from recdistill.errors import ConfigError
from recdistill.export.gbdt_version import write_gbdt_version
from recdistill.predictors.registry import load_predictor
from recdistill.students.gbdt.dask_train import best_iteration, dask_client
from recdistill.students.gbdt.distill import distill_gbdt, gbdt_cluster
from recdistill.students.gbdt.features import GbdtFeaturizer
from recdistill.students.gbdt.train import FEATURIZER_DIR, MODEL_FILE
from recdistill.students.soft_labels import write_soft_labels_dir

CFG = GbdtStudentConfig(num_boost_round=25, num_leaves=7, min_data_in_leaf=20, learning_rate=0.2,
                        early_stopping_rounds=5, oof_folds=3)  # fmt: skip
DASK = GbdtDistributedConfig(engine="dask", scheduler="local", workers=2, partition_rows=700)
ROWS = {"train": 3000, "valid": 1000, "transfer": 500}


def _teacher_logit(df: pl.DataFrame) -> np.ndarray:
    """A teacher that knows the click-relevant signal (score, the privileged 'secret')."""
    return (1.5 * df["score"].to_numpy() + df["secret"].to_numpy() - 0.5).astype(np.float32)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gbdt_dask")
    data, schema = root / "data", Schema.from_dict(TINY_SCHEMA, source="tiny")
    data.mkdir()
    schema.save(data)
    soft: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i, (split, n) in enumerate(ROWS.items()):
        df = tiny_frame(n, seed=20 + i).with_columns(pl.col("row_id") + 100_000 * i)
        logit = _teacher_logit(df)
        click = (np.random.default_rng(i).random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
        df = df.with_columns(pl.Series("click", click))
        (df.drop("click") if split == "transfer" else df).write_parquet(
            data / f"{split}.parquet", row_group_size=400
        )
        soft[split] = (df["row_id"].to_numpy(), logit)
    Preprocessor.fit(data / "train.parquet", schema).save(root / "pre")
    out = write_soft_labels_dir(root / "soft", soft, row_key="row_id", source_hash="t" * 64, source="test")
    _shard_train_soft_labels(out, cut=1234)
    return {"root": root, "data": data, "pre": root / "pre", "soft": out}


def _shard_train_soft_labels(soft: Path, cut: int) -> None:
    """Rewrite train's soft labels in the sharded layout: two parts listed in the manifest."""
    table = pq.read_table(soft / "train.parquet")
    (soft / "train.parquet").unlink()
    (soft / "train.parquet").mkdir()
    parts = []
    for i, (a, b) in enumerate(((0, cut), (cut, table.num_rows))):
        pq.write_table(table.slice(a, b - a), soft / "train.parquet" / f"part-{i:05d}.parquet")
        parts.append({"file": f"train.parquet/part-{i:05d}.parquet", "start": a, "rows": b - a})
    manifest = json.loads((soft / "manifest.json").read_text())
    manifest["splits"]["train"]["parts"] = parts
    (soft / "manifest.json").write_text(json.dumps(manifest))


def _params(model_txt: Path) -> dict[str, str]:
    """The LightGBM parameters a model file records, without the network and thread settings."""
    lines = model_txt.read_text().split("parameters:\n", 1)[1].split("end of parameters", 1)[0].splitlines()
    kv = dict(line.strip("[]").split(": ", 1) for line in lines if ": " in line)
    network = ("tree_learner", "num_machines", "machines", "local_listen_port", "num_threads", "metric",
               "first_metric_only")  # fmt: skip
    return {k: v for k, v in kv.items() if k not in network}


@pytest.mark.slow
def test_dask_student_matches_single_process_exports_and_serves(
    world: dict[str, Path], tmp_path: Path
) -> None:
    common: dict[str, Any] = {
        "data_dir": world["data"],
        "preprocess_dir": world["pre"],
        "soft_dir": world["soft"],
    }
    single = distill_gbdt(**common, out_dir=tmp_path / "single", cfg=CFG, hard=False)
    cfg = replace(CFG, distributed=DASK)
    with gbdt_cluster(cfg) as client:  # one cluster for both students, as the pipeline stage does
        assert client is not None and len(client.scheduler_info()["workers"]) == 2
        dist = distill_gbdt(**common, out_dir=tmp_path / "dask", cfg=cfg, hard=False, client=client)
        hard = distill_gbdt(**common, out_dir=tmp_path / "dask_hard", cfg=cfg, hard=True, client=client)
    assert dist["engine"]["workers"] == 2 and dist["engine"]["partitions"] == {"fitted": 6, "valid": 2}
    assert (
        (dist["train_rows"], dist["transfer_rows"])
        == (3000, 500)
        == (single["train_rows"], single["transfer_rows"])
    )
    assert dist["feature_names"] == single["feature_names"] and "teacher_hash" in dist
    assert not any("te_teacher" in n for n in hard["feature_names"]) and hard["transfer_rows"] == 0
    assert _params(tmp_path / "dask" / MODEL_FILE) == _params(tmp_path / "single" / MODEL_FILE)
    print(f"valid AUC: dask {dist['valid_auc']:.4f}, single process {single['valid_auc']:.4f}")
    assert abs(dist["valid_auc"] - single["valid_auc"]) < 0.03
    # the same featurizer: fitted once from statistics summed over the partitions
    a, b = (GbdtFeaturizer.load(tmp_path / d / FEATURIZER_DIR) for d in ("single", "dask"))
    valid = raw_batch_from_frame(pl.read_parquet(world["data"] / "valid.parquet"), a.schema)
    np.testing.assert_allclose(b.transform(valid), a.transform(valid), rtol=1e-6, equal_nan=True)
    # "serves it": the export stage's writer compiles and checks it, the registry loads it
    record = write_gbdt_version(tmp_path / "version", model_dir=tmp_path / "dask", parity_raw=valid)
    assert record["served_parity_max_abs_diff"] <= 1e-6
    booster = lgb.Booster(model_file=str(tmp_path / "dask" / MODEL_FILE))
    assert booster.num_trees() == dist["best_iteration"]
    served = load_predictor(tmp_path / "version").predict(valid)
    np.testing.assert_allclose(served, booster.predict(b.transform(valid)), atol=1e-6)


def test_scheduler_that_does_not_answer_fails_within_the_timeout() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = GbdtDistributedConfig(engine="dask", scheduler=f"tcp://127.0.0.1:{port}", connect_timeout_s=2)
    t0 = time.perf_counter()
    with (
        pytest.raises(
            ConfigError, match=rf"scheduler 'tcp://127.0.0.1:{port}': no Dask scheduler answered within 2 s"
        ),
        dask_client(cfg),
    ):
        pass
    assert time.perf_counter() - t0 < 20


def test_iteration_rule_is_lightgbms_early_stopping() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 4))
    p = 1 / (1 + np.exp(-(X[:, 0] + 0.5 * X[:, 1])))
    y = (rng.random(3000) < p).astype(float)
    params = {"objective": "cross_entropy", "metric": "cross_entropy", "num_leaves": 31, "learning_rate": 0.3,
              "min_data_in_leaf": 5, "verbosity": -1, "num_threads": 1}  # fmt: skip
    dtrain = lgb.Dataset(X[:2000], y[:2000])
    dvalid = lgb.Dataset(X[2000:], y[2000:], reference=dtrain)
    curve: dict[str, Any] = {}
    stopped = lgb.train(params, dtrain, 200, valid_sets=[dvalid], callbacks=[lgb.early_stopping(7, verbose=False),
                        lgb.record_evaluation(curve)])  # fmt: skip
    full = lgb.train(params, dtrain, 200)
    raw, losses = np.zeros(1000), []
    for i in range(full.num_trees()):  # what the workers compute, on one partition
        raw += full.predict(X[2000:], start_iteration=i, num_iteration=1, raw_score=True)
        q = np.clip(1 / (1 + np.exp(-raw)), 1e-7, 1 - 1e-7)
        losses.append(-np.mean(y[2000:] * np.log(q) + (1 - y[2000:]) * np.log(1 - q)))
    assert stopped.best_iteration < 60  # it did stop early
    assert best_iteration(np.array(losses), 7) == stopped.best_iteration
    assert best_iteration(np.array([3.0, 2.0, 2.0, 1.0, 5.0]), 1) == 2  # stops one round after the low


def test_distributed_section_is_checked() -> None:
    cfg = from_mapping(
        GbdtStudentConfig, {"distributed": {"engine": "dask", "workers": 3}}, source="c.yaml", where="gbdt"
    )
    assert cfg.distributed.engine == "dask" and cfg.distributed.scheduler == "local"
    with pytest.raises(ConfigError, match=r"unknown key 'gbdt.distributed.worker' \(did you mean 'workers'"):
        from_mapping(GbdtStudentConfig, {"distributed": {"worker": 3}}, source="c.yaml", where="gbdt")
    with pytest.raises(ConfigError, match="engine' must be one of"):
        from_mapping(GbdtStudentConfig, {"distributed": {"engine": "spark"}}, source="c.yaml", where="gbdt")
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        from_mapping(GbdtStudentConfig, {"distributed": {"workers": 0}}, source="c.yaml", where="gbdt")
