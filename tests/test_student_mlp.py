"""The embedding-MLP student: model, soft-label checks, distillation, ONNX export and the serving predictor.

Data: a small ``data_gen`` world (privileged scenario: ``user_long_hist`` and ``item_quality``
are ``teacher_only`` and carry signal). The "teacher" is the ground truth itself: its logits
are ``logit(true_ctr)``, which sees the privileged features. Few labelled training rows and a
larger transfer set make the benefit of distillation visible and stable across seeds.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch
from student_util import scramble_weights

from data_gen import generate
from data_gen.schema_def import build_schema
from recdistill.commands import distill_mlp
from recdistill.config import GeneratorConfig
from recdistill.config.distill import DistillLossConfig
from recdistill.config.loader import from_mapping
from recdistill.config.students import MlpStudentConfig
from recdistill.data.batch import ModelBatch, RawBatch, Targets
from recdistill.data.batching import epoch_batches
from recdistill.data.contract import InputContract
from recdistill.data.preprocess import DenseStats, Preprocessor, load_split
from recdistill.data.raw import raw_batch_from_frame
from recdistill.data.schema import Schema
from recdistill.errors import ArtefactError, ConfigError
from recdistill.export.mlp_version import write_mlp_version
from recdistill.export.onnx_mlp import (
    check_parity,
    export_mlp_onnx,
    onnx_metadata,
    ort_session,
    reference_probs,
)
from recdistill.metrics import auc
from recdistill.models.params import count_parameters
from recdistill.models.student_mlp import (
    StudentMLP,
    batch_tensors,
    fold_rows,
    load_student,
)
from recdistill.predictors.mlp import load as load_mlp_predictor
from recdistill.predictors.mlp import predict_probs
from recdistill.predictors.registry import PREDICTOR_FILE, PredictorSpec
from recdistill.students.mlp.train import build_student, train_mlp
from recdistill.students.soft_labels import HASH_KEY, load_soft_labels

SPLITS = ("train", "valid", "test", "transfer")
TEACHER_HASH = "a" * 64
FAST = MlpStudentConfig(epochs=5, batch_size=256, lr=3e-3, patience=2, seed=0)


# -- fixtures -------------------------------------------------------------------------------------
def teacher_logits(t: Targets) -> np.ndarray:
    """The privileged "teacher": the true click logit (it sees the teacher_only features)."""
    p = np.clip(t.true_ctr.astype(np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).astype(np.float32)


def write_soft(
    soft_dir: Path, split: str, keys: np.ndarray, logits: np.ndarray, *, teacher_hash: str = TEACHER_HASH
) -> None:
    """Soft labels in the layout of ``recdistill.teacher.score`` (columns, file metadata, manifest)."""
    from recdistill.teacher.score import soft_label_table

    soft_dir.mkdir(parents=True, exist_ok=True)
    f32, i64 = np.zeros(len(keys), np.float32), np.zeros(len(keys), np.int64)
    table = soft_label_table("row_id", Targets(keys, f32, i64, i64, f32), logits.astype(np.float32))
    pq.write_table(
        table.replace_schema_metadata({HASH_KEY: teacher_hash.encode()}), soft_dir / f"{split}.parquet"
    )
    manifest_path = soft_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"splits": {}}
    manifest.update(teacher_hash=teacher_hash, row_key="row_id")
    manifest["splits"][split] = {"file": f"{split}.parquet", "rows": len(keys)}
    manifest_path.write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("world")
    cfg = GeneratorConfig(
        seed=3,
        rows=14_000,
        transfer_rows=6_000,
        candidates_per_request=16,
        n_users=300,
        n_items=400,
        n_categories=20,
        n_contexts=8,
        base_ctr=0.2,
        split=(0.15, 0.05, 0.8),
    )
    generate(cfg, d / "data", progress=False)
    pre = Preprocessor.fit(d / "data" / "train.parquet", Schema.load(d / "data"))
    pre.save(d / "preprocess")
    splits = {s: load_split(d / "data" / f"{s}.parquet", pre) for s in SPLITS}
    soft = {s: teacher_logits(t) for s, (_, t) in splits.items()}
    for s, (_, t) in splits.items():
        write_soft(d / "soft_labels", s, t.row_key, soft[s])
    raw_test = raw_batch_from_frame(pl.read_parquet(d / "data" / "test.parquet").head(1000), pre.schema)
    return {"dir": d, "pre": pre, "splits": splits, "soft": soft, "raw_test": raw_test}


@pytest.fixture(scope="module")
def trained(world: dict[str, Any]) -> dict[str, Any]:
    """The distilled student (soft labels + transfer set) and its hard-label twin."""
    sp, out = world["splits"], world["dir"] / "students"
    runs: dict[str, Any] = {}
    for name, loss in (
        ("kd", DistillLossConfig(kind="kd", alpha=0.0)),
        ("hard", DistillLossConfig(kind="hard")),
    ):
        metrics = train_mlp(
            pre=world["pre"],
            train=sp["train"],
            valid=sp["valid"],
            soft=world["soft"],
            cfg=FAST,
            loss_cfg=loss,
            transfer=sp["transfer"],
            out_dir=out / name,
            progress=False,
        )
        model, fingerprint = load_student(out / name)
        runs[name] = {"metrics": metrics, "model": model, "dir": out / name, "fingerprint": fingerprint}
    return runs


def logits_of(model: StudentMLP, b: ModelBatch) -> np.ndarray:
    with torch.no_grad():
        return model(*batch_tensors(b)).numpy()


# -- model ----------------------------------------------------------------------------------------
def test_forward_shapes_and_pooling(world: dict[str, Any]) -> None:
    pre = world["pre"]
    b = world["splits"]["valid"][0].slice(0, 7)
    for pooling in ("mean", "sum"):
        model = build_student(pre, replace(FAST, pooling=pooling, hidden=(16, 8, 4)))
        out = model(*batch_tensors(b))
        assert out.shape == (7,) and out.dtype == torch.float32 and torch.isfinite(out).all()
    # every table is sized by its own vocabulary: the last row of every feature is in range
    for t in model.inputs.tables:
        feats = [pre.schema.categorical[j].name for j in t.cat_columns] + [
            pre.schema.multi[j].name for j in t.multi_columns
        ]
        assert {pre.table_rows(f) for f in feats} == {t.source_rows}, (t, feats)
    last_ids = np.array([[pre.table_rows(f.name) - 1 for f in pre.schema.categorical]] * 3, dtype=np.int64)
    last_multi = np.broadcast_to(
        np.array([pre.table_rows(f.name) - 1 for f in pre.schema.multi], dtype=np.int64)[None, :, None],
        (3, len(pre.schema.multi), pre.max_len),
    ).copy()
    assert torch.isfinite(model(*batch_tensors(ModelBatch(b.dense[:3], last_ids, last_multi)))).all()
    with pytest.raises(Exception, match="expects"):
        model.inputs.check_batch(ModelBatch(b.dense[:, :-1], b.ids, b.multi), "valid")


def test_teacher_only_columns_never_change_the_output(world: dict[str, Any], tiny_data: Path) -> None:
    rng = np.random.default_rng(0)
    # data_gen: teacher_only multi (user_long_hist) and dense (item_quality) columns
    pre = world["pre"]
    b = world["splits"]["valid"][0].slice(0, 200)
    model = build_student(pre, FAST)
    teacher_dense = sorted(set(range(pre.dense_dim)) - set(pre.dense_columns(student=True)))
    teacher_multi = sorted(set(range(len(pre.schema.multi))) - set(pre.id_columns("multi", student=True)))
    assert teacher_dense and teacher_multi
    dense, multi = b.dense.copy(), b.multi.copy()
    dense[:, teacher_dense] = rng.normal(size=(len(b), len(teacher_dense))) * 5
    multi[:, teacher_multi, :] = multi[rng.permutation(len(b))][:, teacher_multi, :]
    np.testing.assert_array_equal(logits_of(model, b), logits_of(model, ModelBatch(dense, b.ids, multi)))
    # and a teacher_only categorical column (the tiny schema with item_cat marked teacher_only)
    schema = Schema.load(tiny_data).with_teacher_only(["secret", "item_cat"])
    tiny_pre = Preprocessor.fit(tiny_data / "train.parquet", schema)
    tb, _ = load_split(tiny_data / "valid.parquet", tiny_pre)
    tiny_model = build_student(tiny_pre, FAST)
    col = schema.categorical.index(schema.feature("item_cat"))
    ids = tb.ids.copy()
    ids[:, col] = rng.integers(0, tiny_pre.table_rows("item_cat"), size=len(tb))
    assert not np.array_equal(ids, tb.ids)
    np.testing.assert_array_equal(
        logits_of(tiny_model, tb), logits_of(tiny_model, ModelBatch(tb.dense, ids, tb.multi))
    )
    # a changed serving-time column does change it
    ids[:, 1] = (ids[:, 1] + 1) % tiny_pre.table_rows("item_id")
    assert not np.array_equal(
        logits_of(tiny_model, tb), logits_of(tiny_model, ModelBatch(tb.dense, ids, tb.multi))
    )


def test_fold_rows_keeps_padding_and_oov() -> None:
    rows = torch.arange(0, 50)
    folded = fold_rows(rows, 10)
    assert folded[:2].tolist() == [0, 1]
    assert int(folded.min()) >= 0 and int(folded.max()) == 9
    assert folded[2:10].tolist() == list(range(2, 10)) and int(folded[10]) == 2


def demo_scale_preprocessor(cfg: GeneratorConfig) -> Preprocessor:
    """A preprocessor with the demo's vocabulary sizes, without generating the data."""
    schema = build_schema(cfg)
    sizes = {"user_id": cfg.n_users, "user_age_bucket": cfg.n_age_buckets, "item_id": cfg.n_items,
             "item_category": cfg.n_categories, "context_id": cfg.n_contexts,
             "position": cfg.candidates_per_request}  # fmt: skip
    vocabs = {k: np.arange(n, dtype=np.int64) for k, n in sizes.items()}
    stats = {f.name: DenseStats(0.0, 1.0, f.name == "item_ctr_7d") for f in schema.dense}
    return Preprocessor(schema, stats, vocabs, {})


def test_parameter_count_is_at_least_20x_below_the_default_teacher() -> None:
    from recdistill.config.teacher import TeacherConfig
    from recdistill.models.teacher import TeacherInputs, build_teacher

    pre = demo_scale_preprocessor(GeneratorConfig())
    student = count_parameters(build_student(pre, MlpStudentConfig()))
    teacher = count_parameters(build_teacher(TeacherInputs.from_preprocessor(pre), TeacherConfig()))
    assert teacher["total"] > 5_000_000
    assert 20 * student["total"] <= teacher["total"], (student, teacher)
    # folding bounds every table by max_rows_per_table (item_id has 50k ids)
    assert max(t.rows for t in build_student(pre, MlpStudentConfig()).inputs.tables) == 5_000
    unfolded = count_parameters(build_student(pre, replace(MlpStudentConfig(), max_rows_per_table=None)))
    assert unfolded["embedding"] > student["embedding"]


def test_config_is_strict() -> None:
    with pytest.raises(ValueError, match="1 to 3"):
        MlpStudentConfig(hidden=(8, 8, 8, 8))
    with pytest.raises(ValueError, match="max_rows_per_table"):
        MlpStudentConfig(max_rows_per_table=2)
    with pytest.raises(ConfigError, match="did you mean 'embedding_dim'"):
        from_mapping(MlpStudentConfig, {"embeding_dim": 8}, source="x.yaml", where="student_mlp")
    cfg = from_mapping(MlpStudentConfig, {"hidden": [32], "max_rows_per_table": None}, source="x.yaml")
    assert cfg.hidden == (32,) and cfg.max_rows_per_table is None


# -- batching ---------------------------------------------------------------------------------------
def test_listwise_batches_hold_whole_requests() -> None:
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 20, size=200)
    groups = rng.permutation(np.repeat(np.arange(200) * 7 - 50, sizes))  # rows of a request scattered
    batches = epoch_batches(len(groups), 64, rng, groups=groups)
    rows = np.concatenate(batches)
    assert np.array_equal(np.sort(rows), np.arange(len(groups)))  # every row exactly once
    owner: dict[int, int] = {}
    for k, b in enumerate(batches):
        for g in np.unique(groups[b]):
            assert owner.setdefault(int(g), k) == k  # a request never spans two batches
    assert max(len(b) for b in batches) < 64 + 20
    free = epoch_batches(len(groups), 64, rng)
    assert sum(len(b) for b in free) == len(groups) and all(len(b) == 64 for b in free[:-1])
    # the student keeps the last partial batch: the order it used before batch order had one home
    perm = np.random.default_rng(5).permutation(1000)
    kept = epoch_batches(1000, 64, np.random.default_rng(5))
    assert len(kept[-1]) == 1000 % 64 and np.array_equal(np.concatenate(kept), perm)


# -- soft labels ----------------------------------------------------------------------------------
def test_soft_labels_load_aligned_even_when_reordered(world: dict[str, Any], tmp_path: Path) -> None:
    _, t = world["splits"]["valid"]
    got = load_soft_labels(world["dir"] / "soft_labels", "valid", t, expected_teacher_hash=TEACHER_HASH)
    np.testing.assert_array_equal(got, world["soft"]["valid"])
    perm = np.random.default_rng(0).permutation(len(t))
    write_soft(tmp_path, "valid", t.row_key[perm], world["soft"]["valid"][perm])
    np.testing.assert_array_equal(load_soft_labels(tmp_path, "valid", t, expected_teacher_hash=None), got)


def test_soft_labels_that_do_not_match_fail_clearly(world: dict[str, Any], tmp_path: Path) -> None:
    _, t = world["splits"]["valid"]
    keys, logits = t.row_key, world["soft"]["valid"]
    with pytest.raises(ArtefactError, match="manifest not found"):
        load_soft_labels(tmp_path / "none", "valid", t, expected_teacher_hash=None)
    with pytest.raises(ArtefactError, match=r"from teacher aaaaaaaaaaaa.*expected teacher is bbbb"):
        load_soft_labels(world["dir"] / "soft_labels", "valid", t, expected_teacher_hash="b" * 64)
    write_soft(tmp_path / "count", "valid", keys[:-3], logits[:-3])
    with pytest.raises(
        ArtefactError, match=rf"valid.parquet: {len(t) - 3} soft labels for a valid split of {len(t)} rows"
    ):
        load_soft_labels(tmp_path / "count", "valid", t, expected_teacher_hash=None)
    other = keys.copy()
    other[[0, 5]] += 10_000_000
    write_soft(tmp_path / "keys", "valid", other, logits)
    with pytest.raises(ArtefactError, match="2 data rows have no soft label.*2 soft labels have no data row"):
        load_soft_labels(tmp_path / "keys", "valid", t, expected_teacher_hash=None)
    bad = logits.copy()
    bad[[1, 2, 3]] = np.nan
    bad[4] = np.inf
    write_soft(tmp_path / "nan", "valid", keys, bad)
    with pytest.raises(
        ArtefactError, match=rf"4 of {len(t)} rows have a non-finite 'teacher_logit' \(3 NaN, 1 inf"
    ):
        load_soft_labels(tmp_path / "nan", "valid", t, expected_teacher_hash=None)
    # probabilities outside [0, 1]: rewrite the prob column of a valid file
    write_soft(tmp_path / "prob", "valid", keys, logits)
    table = pq.read_table(tmp_path / "prob" / "valid.parquet")
    prob = table.column("teacher_prob").to_numpy().copy()
    prob[:2] = [1.5, -0.1]
    pq.write_table(table.set_column(2, "teacher_prob", [prob]), tmp_path / "prob" / "valid.parquet")
    with pytest.raises(
        ArtefactError, match=rf"2 of {len(t)} rows have 'teacher_prob' NaN or outside \[0, 1\]"
    ):
        load_soft_labels(tmp_path / "prob", "valid", t, expected_teacher_hash=None)
    # a file from another scoring run beside this manifest
    write_soft(tmp_path / "mixed", "valid", keys, logits, teacher_hash="c" * 64)
    manifest = json.loads((tmp_path / "mixed" / "manifest.json").read_text())
    (tmp_path / "mixed" / "manifest.json").write_text(json.dumps({**manifest, "teacher_hash": TEACHER_HASH}))
    with pytest.raises(ArtefactError, match="comes from another scoring run"):
        load_soft_labels(tmp_path / "mixed", "valid", t, expected_teacher_hash=TEACHER_HASH)


# -- distillation ---------------------------------------------------------------------------------
def test_distilled_student_beats_its_hard_label_twin(world: dict[str, Any], trained: dict[str, Any]) -> None:
    test_batch, test_t = world["splits"]["test"]
    scores = {k: auc(test_t.label, trained[k]["model"].predict_logits(test_batch)) for k in ("kd", "hard")}
    assert scores["kd"] > scores["hard"] + 0.01, scores
    kd, hard = trained["kd"]["metrics"], trained["hard"]["metrics"]
    assert kd["rows"]["transfer"] == len(world["splits"]["transfer"][0]) > 0
    assert hard["rows"]["transfer"] == 0  # the hard twin cannot use unlabelled rows
    assert kd["objective"] == "Loss = 1 * soft_bce(T=1) + 1 * logit_mse"
    assert hard["objective"] == "Loss = 1 * hard_bce"
    for run in trained.values():
        files = {p.name for p in run["dir"].iterdir()}
        assert files == {"model.pt", "config.json", "metrics.json"}
        saved = json.loads((run["dir"] / "metrics.json").read_text())
        assert saved["best_epoch"] == run["metrics"]["best_epoch"] and saved["params"]["total"] > 0


def test_transfer_rows_feed_the_soft_loss(
    world: dict[str, Any], trained: dict[str, Any], tmp_path: Path
) -> None:
    sp = world["splits"]
    without = train_mlp(
        pre=world["pre"], train=sp["train"], valid=sp["valid"], soft=world["soft"],
        cfg=replace(FAST, use_transfer=False), loss_cfg=DistillLossConfig(kind="kd", alpha=0.0),
        transfer=sp["transfer"], out_dir=tmp_path / "no_transfer", progress=False,
    )  # fmt: skip
    assert without["rows"]["transfer"] == 0
    with_transfer = trained["kd"]["metrics"]
    # more teacher-scored rows: the student follows the teacher more closely
    assert with_transfer["valid"]["logit_mse_to_teacher"] < without["valid"]["logit_mse_to_teacher"]
    with pytest.raises(ArtefactError, match="teacher logits for the transfer split"):
        train_mlp(
            pre=world["pre"], train=sp["train"], valid=sp["valid"], soft={"train": world["soft"]["train"]},
            cfg=FAST, loss_cfg=DistillLossConfig(), transfer=sp["transfer"], out_dir=tmp_path / "x", progress=False,
        )  # fmt: skip


def test_listwise_training_runs_on_whole_requests(world: dict[str, Any], tmp_path: Path) -> None:
    sp = world["splits"]
    metrics = train_mlp(
        pre=world["pre"], train=sp["train"], valid=sp["valid"], soft=world["soft"],
        cfg=replace(FAST, epochs=1, use_transfer=False), loss_cfg=DistillLossConfig(listwise=0.5),
        out_dir=tmp_path / "lw", progress=False,
    )  # fmt: skip
    assert metrics["whole_request_batches"] and "listwise_kd(T=1)" in metrics["objective"]
    assert np.isfinite(metrics["history"][0]["train_loss"])


# -- export and serving ---------------------------------------------------------------------------
def test_onnx_export_parity_dynamic_batch_and_predictor(
    world: dict[str, Any], trained: dict[str, Any], tmp_path: Path
) -> None:
    model, pre, raw = trained["kd"]["model"], world["pre"], world["raw_test"]
    path = export_mlp_onnx(model, pre, tmp_path / "model.onnx", sample=raw)
    proto = onnx.load(str(path))
    assert proto.ir_version <= 10
    assert not {n.op_type for n in proto.graph.node} & {"Loop", "Scan", "If"}
    meta = onnx_metadata(path)
    assert float(meta["recdistill.parity_max_abs_diff_prob"]) <= 1e-6
    assert int(meta["recdistill.parity_rows"]) > 1000  # the real rows and their edge-case copies
    # the demo's shape of student (direct vocabularies): a small graph, smaller still once optimised
    assert int(meta["recdistill.optimized_graph_nodes"]) <= int(meta["recdistill.graph_nodes"]) <= 60
    want = reference_probs(model, pre, raw)
    session = ort_session(path)
    for n in (1, 1000):
        got = predict_probs(session, raw.slice(0, n))
        assert got.shape == (n,) and got.dtype == np.float32
        np.testing.assert_allclose(got, want[:n], atol=1e-6)
    # the exported version folder: one file beside predictor.json, and its predictor on raw tensors
    version = tmp_path / "export" / "mlp"
    record = write_mlp_version(
        version, student_dir=trained["kd"]["dir"], preprocess_dir=world["dir"] / "preprocess", parity_raw=raw
    )
    assert record["served_parity_max_abs_diff"] <= 1e-6
    assert sorted(p.name for p in version.iterdir()) == ["model.onnx", PREDICTOR_FILE]
    assert json.loads((version / PREDICTOR_FILE).read_text()) == {"kind": "mlp_onnx"}
    predictor = load_mlp_predictor(PredictorSpec("mlp_onnx", version, None, {}))
    probs = predictor.predict(raw)
    assert probs.dtype == np.float32 and probs.shape == (1000,)
    np.testing.assert_allclose(probs, want, atol=1e-6)
    one = predictor.predict(RawBatch(raw.dense[:1], raw.ids[:1], raw.multi[:1]))
    np.testing.assert_allclose(one, probs[:1], atol=1e-6)


def test_onnx_export_of_every_block_with_folded_tables(world: dict[str, Any], tmp_path: Path) -> None:
    cfg = replace(FAST, max_rows_per_table=50, id_bias=True, max_bias_rows_per_table=100)
    model = build_student(world["pre"], cfg)
    assert model.dot_interaction and model.history_match and any(t.folded for t in model.inputs.tables)
    scramble_weights(model)
    path = export_mlp_onnx(model, world["pre"], tmp_path / "all.onnx", sample=world["raw_test"])
    assert float(onnx_metadata(path)["recdistill.parity_max_abs_diff_prob"]) <= 1e-6
    assert not {n.op_type for n in onnx.load(str(path)).graph.node} & {"Loop", "Scan", "If"}


def test_serving_refuses_another_preprocessing_or_contract(
    world: dict[str, Any], trained: dict[str, Any], tmp_path: Path
) -> None:
    student, raw = trained["kd"]["dir"], world["raw_test"].slice(0, 50)
    other = Preprocessor.fit(world["dir"] / "data" / "valid.parquet", world["pre"].schema)
    other.save(tmp_path / "other_pre")
    with pytest.raises(ArtefactError, match="fingerprint mismatch"):
        write_mlp_version(
            tmp_path / "v", student_dir=student, preprocess_dir=tmp_path / "other_pre", parity_raw=raw
        )
    assert not (tmp_path / "v").exists()  # nothing half-written
    write_mlp_version(
        tmp_path / "v", student_dir=student, preprocess_dir=world["dir"] / "preprocess", parity_raw=raw
    )
    own = InputContract.from_schema(world["pre"].schema)
    assert load_mlp_predictor(PredictorSpec("mlp_onnx", tmp_path / "v", own, {})) is not None
    wider = replace(own, n_dense=own.n_dense + 1)
    with pytest.raises(ArtefactError, match="the graph takes input contract"):
        load_mlp_predictor(PredictorSpec("mlp_onnx", tmp_path / "v", wider, {}))


def test_parity_check_catches_a_wrong_graph(
    world: dict[str, Any], trained: dict[str, Any], tmp_path: Path
) -> None:
    model, pre, raw = trained["kd"]["model"], world["pre"], world["raw_test"].slice(0, 100)
    proto = onnx.load(str(export_mlp_onnx(model, pre, tmp_path / "m.onnx", sample=raw)))
    last_bias = sorted(i.name for i in proto.graph.initializer if i.name.startswith("mlp/b"))[-1]
    init = next(i for i in proto.graph.initializer if i.name == last_bias)  # the logit's bias
    value = onnx.numpy_helper.to_array(init) + 0.01
    init.CopyFrom(onnx.numpy_helper.from_array(value, init.name))
    with pytest.raises(ArtefactError, match=r"does not match the student: max \|p_onnx - p_torch\|"):
        check_parity(ort_session(proto.SerializeToString()), model, pre, raw)


def test_cli_distill_mlp_end_to_end(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = world["dir"]
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "student_mlp:\n  epochs: 1\n  batch_size: 512\ndistill:\n  alpha: 0.3\n  temperature: 2.0\nteacher: {}\n"
    )
    parser = argparse.ArgumentParser()
    distill_mlp.register(parser.add_subparsers())
    args = parser.parse_args(["distill-mlp", "--data", str(d / "data"), "--preprocess", str(d / "preprocess"),
                              "--soft-labels", str(d / "soft_labels"), "--out", str(tmp_path / "mlp"),
                              "--config", str(cfg), "--no-progress"])  # fmt: skip
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["objective"] == "Loss = 0.3 * hard_bce + 0.7 * soft_bce(T=2) + 1 * logit_mse"
    assert summary["rows"]["transfer"] > 0 and (tmp_path / "mlp" / "model.pt").is_file()
    hard = parser.parse_args(["distill-mlp", "--data", str(d / "data"), "--preprocess", str(d / "preprocess"),
                              "--out", str(tmp_path / "kd_missing")])  # fmt: skip
    with pytest.raises(ArtefactError, match="--soft-labels is required"):
        hard.func(hard)
