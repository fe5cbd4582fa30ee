"""Fast tests of the serving pieces that need no server: configs, repository checks, validation."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from google.protobuf import text_format  # type: ignore[import-untyped, unused-ignore]
from tritonclient.grpc import model_config_pb2 as mc

from recdistill.config.loader import from_mapping
from recdistill.config.serving import ServingConfig
from recdistill.data.batch import RawBatch
from recdistill.data.contract import InputContract
from recdistill.data.raw import raw_batch_from_frame
from recdistill.data.schema import Schema
from recdistill.errors import ConfigError, SchemaError, ServingError
from serving.client import raw_batches_from_file
from serving.contract import TensorSpec, contract_io, to_wire, wire_dims
from serving.execute import execute_requests
from serving.launcher import free_ports, port_is_free
from serving.repository import (
    ModelSpec,
    model_config_pbtxt,
    ranker_config_pbtxt,
    validate_repository,
    write_repository,
)
from serving.triton_install import MARKER, STUB, locate_wheel, prepare_triton
from serving.validation import InvalidRequestError, check_predictions, validate_request

CONTRACT = InputContract(n_dense=3, n_ids=2, n_multi=2, max_len=4)


def parse(text: str) -> mc.ModelConfig:
    cfg = mc.ModelConfig()
    text_format.Parse(text, cfg)
    return cfg


def raw_batch(b: int, c: InputContract = CONTRACT, seed: int = 0) -> RawBatch:
    rng = np.random.default_rng(seed)
    return RawBatch(
        dense=rng.normal(size=(b, c.n_dense)).astype(np.float32),
        ids=rng.integers(-1, 1000, size=(b, c.n_ids)),
        multi=rng.integers(-1, 1000, size=(b, c.n_multi, c.max_len)),
    )


# -- config.pbtxt generation -----------------------------------------------------------------------
def test_model_config_roundtrips_through_model_config_proto() -> None:
    inputs, outputs = contract_io(3, 2, 2, 4)
    text = model_config_pbtxt(
        name="m",
        max_batch_size=256,
        inputs=inputs,
        outputs=outputs,
        max_queue_delay_us=250,
        preferred_batch_sizes=(64, 128),
        instance_count=2,
        warmup=True,
        warmup_batch_sizes=(1, 256),
        parameters={"k": "v"},
    )
    cfg = parse(text)
    assert cfg.name == "m" and cfg.backend == "python" and cfg.max_batch_size == 256
    assert [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in cfg.input] == [
        ("dense", "TYPE_FP32", [3]),
        ("ids", "TYPE_INT64", [2]),
        ("multi", "TYPE_INT64", [2, 4]),
    ]
    assert [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in cfg.output] == [
        ("prob", "TYPE_FP32", [1])
    ]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 250
    assert list(cfg.dynamic_batching.preferred_batch_size) == [64, 128]
    assert cfg.instance_group[0].count == 2 and cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert [w.batch_size for w in cfg.model_warmup] == [1, 256]
    assert all(i.zero_data for w in cfg.model_warmup for i in w.inputs.values())
    assert list(cfg.model_warmup[0].inputs["multi"].dims) == [2, 4]
    assert cfg.version_policy.latest.num_versions == 1
    assert cfg.parameters["k"].string_value == "v"


def test_model_config_options_and_refusals() -> None:
    inputs, outputs = contract_io(1, 1, 1, 1)
    base = dict(name="m", max_batch_size=8, inputs=inputs, outputs=outputs)
    cfg = parse(model_config_pbtxt(**base, dynamic_batching=False, version_policy=[1, 3]))  # type: ignore[arg-type]
    assert not cfg.HasField("dynamic_batching") and list(cfg.version_policy.specific.versions) == [1, 3]
    assert parse(model_config_pbtxt(**base, version_policy="all")).version_policy.HasField("all")  # type: ignore[arg-type]
    with pytest.raises(ServingError, match="warm-up batch size 9"):
        model_config_pbtxt(**base, warmup=True, warmup_batch_sizes=(9,))  # type: ignore[arg-type]
    with pytest.raises(ServingError, match="unknown Triton dtype 'TYPE_F32'"):
        model_config_pbtxt(**{**base, "inputs": [TensorSpec("dense", "TYPE_F32", (1,))]})  # type: ignore[arg-type]
    with pytest.raises(ServingError, match="needs at least one step"):
        model_config_pbtxt(**base, platform="ensemble", dynamic_batching=False)  # type: ignore[arg-type]
    with pytest.raises(ServingError, match="instance_count"):
        model_config_pbtxt(**base, instance_count=0)  # type: ignore[arg-type]


def test_ranker_is_an_ensemble_forwarding_every_tensor() -> None:
    cfg = parse(ranker_config_pbtxt(target="mlp", contract=CONTRACT, max_batch_size=64))
    assert cfg.name == "ranker" and cfg.platform == "ensemble" and not cfg.backend
    assert not cfg.HasField("dynamic_batching") and not cfg.instance_group
    (step,) = cfg.ensemble_scheduling.step
    assert step.model_name == "mlp" and step.model_version == -1
    assert dict(step.input_map) == {"dense": "dense", "ids": "ids", "multi": "multi"}
    assert dict(step.output_map) == {"prob": "prob"}


def test_zero_width_features_travel_as_a_dummy_column() -> None:
    inputs, _ = contract_io(0, 0, 0, 0)
    assert [t.dims for t in inputs] == [(1,), (1,), (1, 1)]
    c = InputContract(n_dense=0, n_ids=2, n_multi=0, max_len=0)
    raw = RawBatch(np.zeros((3, 0), np.float32), np.zeros((3, 2), np.int64), np.zeros((3, 0, 0), np.int64))
    wire = to_wire(raw)
    assert wire["dense"].shape == (3, 1) and np.isnan(wire["dense"]).all()
    assert wire["multi"].shape == (3, 1, 1) and (wire["multi"] == -1).all()
    back = validate_request(wire["dense"], wire["ids"], wire["multi"], c)
    assert back.dense.shape == (3, 0) and back.ids.shape == (3, 2) and back.multi.shape == (3, 0, 0)


def test_contract_from_schema_matches_raw_extraction(tmp_path: Path) -> None:
    schema = Schema.from_dict(
        {
            "label": "click",
            "features": [
                {"name": "price", "kind": "dense"},
                {"name": "item", "kind": "categorical"},
                {"name": "user", "kind": "categorical", "teacher_only": True},
                {"name": "hist", "kind": "multi", "max_len": 3},
            ],
        }
    )
    contract = InputContract.from_schema(schema)
    assert contract == InputContract(n_dense=1, n_ids=2, n_multi=1, max_len=3)
    frame = pl.DataFrame(
        {
            "row_id": range(5),
            "click": [0, 1, 0, 0, 1],
            "price": [1.0, None, 3.0, 4.0, 5.0],
            "item": [7, 8, None, 9, 10],
            "user": [1, 1, 2, 2, 3],
            "hist": [[1, 2, 3, 4], [], None, [5], [6, 7]],
        }
    )
    frame.write_parquet(tmp_path / "d.parquet")
    batches = list(raw_batches_from_file(tmp_path / "d.parquet", schema, candidates=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    for b in batches:
        ok = validate_request(*_wire(b), contract)
        assert ok.multi.shape[1:] == (1, 3)
    assert batches[0].multi[0, 0].tolist() == [2, 3, 4] and np.isnan(batches[0].dense[1, 0])
    no_multi = Schema.from_dict({"label": "y", "features": [{"name": "a", "kind": "categorical"}]})
    c0 = InputContract.from_schema(no_multi)
    assert (c0.n_dense, c0.n_multi, wire_dims(c0)["multi"]) == (0, 0, (1, 1))
    raw0 = raw_batch_from_frame(pl.DataFrame({"a": [1, 2]}), no_multi)
    back = validate_request(*_wire(raw0), c0)
    assert back.multi.shape == raw0.multi.shape and back.dense.shape == raw0.dense.shape == (2, 0)


def test_input_contract_checks_and_json() -> None:
    with pytest.raises(SchemaError, match="n_dense must be an integer >= 0"):
        InputContract(n_dense=-1, n_ids=0, n_multi=0, max_len=0)
    with pytest.raises(SchemaError, match="needs max_len >= 1"):
        InputContract(n_dense=1, n_ids=0, n_multi=2, max_len=0)
    assert InputContract.from_json(CONTRACT.to_json(), where="x") == CONTRACT
    with pytest.raises(SchemaError, match="x: input contract must be an object"):
        InputContract.from_json('{"n_dense": 1}', where="x")


# -- repository writing and validation --------------------------------------------------------------
@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    models = [ModelSpec("noop", {"kind": "noop"}), ModelSpec("noop_b", {"kind": "noop", "value": 0.25})]
    return write_repository(
        tmp_path / "repo", models, contract=CONTRACT, config=ServingConfig(max_batch_size=32)
    )


def test_write_repository_layout_and_validation(repo: Path) -> None:
    assert sorted(p.name for p in repo.iterdir()) == ["noop", "noop_b", "ranker"]
    assert (repo / "noop/1/model.py").read_text().startswith('"""Triton Python-backend glue')
    assert json.loads((repo / "noop_b/1/predictor.json").read_text()) == {"kind": "noop", "value": 0.25}
    assert (repo / "ranker/1").is_dir()
    checked = validate_repository(repo, expect_contract=CONTRACT)
    assert checked.contract == CONTRACT and sorted(checked.models) == ["noop", "noop_b", "ranker"]
    assert checked.models["ranker"].ensemble_scheduling.step[0].model_name == "noop"  # first model by default


def test_write_repository_refuses_bad_specs(tmp_path: Path) -> None:
    cfg = ServingConfig(ranker_target="missing")
    with pytest.raises(ServingError, match="ranker target 'missing' is not one of the models"):
        write_repository(tmp_path / "r", [ModelSpec("a", {"kind": "noop"})], contract=CONTRACT, config=cfg)
    with pytest.raises(ServingError, match="unknown predictor kind 'nope'"):
        write_repository(
            tmp_path / "r", [ModelSpec("a", {"kind": "nope"})], contract=CONTRACT, config=ServingConfig()
        )
    assert not (tmp_path / "r").exists()  # nothing half-written is left behind


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (
            lambda r: _edit(r / "noop/config.pbtxt", "dims: 3", "dims: 4"),
            "model 'noop': input 'dense' has dims \\[4\\], expected \\[3\\]",
        ),
        (
            lambda r: _edit(r / "noop/config.pbtxt", "TYPE_INT64", "TYPE_INT32"),
            "input 'ids' has data_type TYPE_INT32",
        ),
        (
            lambda r: _edit(r / "noop/config.pbtxt", 'name: "prob"', 'name: "p"'),
            "outputs are \\['p'\\], expected \\['prob'\\]",
        ),
        (
            lambda r: _edit(r / "noop/config.pbtxt", 'name: "noop"', 'name: "other"'),
            "must match the folder name",
        ),
        (
            lambda r: _edit(r / "noop/config.pbtxt", 'backend: "python"', 'backend: "onnxruntime"'),
            "backend 'onnxruntime' is not supported",
        ),
        (
            lambda r: _edit(r / "noop/config.pbtxt", "max_batch_size: 32", "max_batch_size: x"),
            "model 'noop': .* is not a valid ModelConfig",
        ),
        (
            lambda r: _edit(r / "noop/config.pbtxt", '\\"n_dense\\": 3', '\\"n_dense\\": 5'),
            "model 'noop': input contract",
        ),
        (lambda r: (r / "noop/1/predictor.json").unlink(), "model 'noop': .*predictor.json: not found"),
        (
            lambda r: (r / "noop/1/predictor.json").write_text('{"kind": "gbdt"}'),
            "unknown predictor kind 'gbdt'",
        ),
        (
            lambda r: (r / "noop/1/predictor.json").write_text('{"kind": "noop", "valu": 1}'),
            "unknown keys \\['valu'\\]",
        ),
        (lambda r: (r / "noop/1/model.py").unlink(), "model.py not found"),
        (lambda r: shutil.rmtree(r / "noop_b/1"), "model 'noop_b': no version folder"),
        (lambda r: (r / "noop/config.pbtxt").unlink(), "model 'noop': .*config.pbtxt not found"),
        (
            lambda r: shutil.rmtree(r / "noop"),
            "ensemble step names model 'noop', which is not in the repository",
        ),
    ],
)
def test_validate_repository_names_model_and_field(repo: Path, breakage: object, message: str) -> None:
    breakage(repo)  # type: ignore[operator]
    with pytest.raises(ServingError, match=message):
        validate_repository(repo, expect_contract=CONTRACT)


def test_validate_repository_expect_contract_and_empty(tmp_path: Path, repo: Path) -> None:
    other = InputContract(n_dense=3, n_ids=2, n_multi=2, max_len=5)
    with pytest.raises(ServingError, match="differs from the expected"):
        validate_repository(repo, expect_contract=other)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ServingError, match="holds no model folders"):
        validate_repository(tmp_path / "empty")
    with pytest.raises(ServingError, match="model repository not found"):
        validate_repository(tmp_path / "absent")


# -- request validation ---------------------------------------------------------------------------
def _wire(raw: RawBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = to_wire(raw)
    return w["dense"], w["ids"], w["multi"]


def test_validate_request_accepts_nan_and_missing_ids() -> None:
    raw = raw_batch(4)
    raw.dense[0, 1] = np.nan
    raw.ids[1, :] = -1
    out = validate_request(*_wire(raw), CONTRACT)
    assert len(out) == 4 and np.isnan(out.dense[0, 1])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d, i, m: (d.astype(np.float64), i, m), "input 'dense' has dtype float64, expected FP32"),
        (lambda d, i, m: (d, i.astype(np.int32), m), "input 'ids' has dtype int32, expected INT64"),
        (lambda d, i, m: (d[:, :2], i, m), "input 'dense' has shape \\[4, 2\\], expected \\[B, 3\\]"),
        (lambda d, i, m: (d, i, m[:, 0]), "input 'multi' has shape \\[4, 4\\] \\(rank 2\\), expected rank 3"),
        (lambda d, i, m: (d, None, m), "input 'ids' is missing"),
        (lambda d, i, m: (d, i[:3], m), "inputs disagree on the batch size"),
        (lambda d, i, m: (d[:0], i[:0], m[:0]), "empty batch"),
        (
            lambda d, i, m: (np.where(np.eye(4, 3, dtype=bool), np.inf, d).astype(np.float32), i, m),
            "input 'dense' has 3 infinite value\\(s\\) \\(first inf at row 0, column 0\\)",
        ),
        (
            lambda d, i, m: (d, np.where(i > 500, -7, i), m),
            "input 'ids' has \\d+ id\\(s\\) below -1 \\(first -7",
        ),
        (lambda d, i, m: (d, i, np.full_like(m, -2)), "input 'multi' has 32 id\\(s\\) below -1"),
    ],
)
def test_validate_request_rejects_with_a_named_reason(change: object, message: str) -> None:
    dense, ids, multi = change(*_wire(raw_batch(4)))  # type: ignore[operator]
    with pytest.raises(InvalidRequestError, match=message):
        validate_request(dense, ids, multi, CONTRACT)


def test_validate_request_max_batch_size() -> None:
    with pytest.raises(InvalidRequestError, match="batch of 5 rows exceeds max_batch_size 4"):
        validate_request(*_wire(raw_batch(5)), CONTRACT, max_batch_size=4)


def test_check_predictions() -> None:
    assert check_predictions(np.full((3, 1), 0.5), 3, source="p").shape == (3,)
    with pytest.raises(ServingError, match="p returned shape \\[2\\], expected \\[3\\]"):
        check_predictions(np.zeros(2), 3, source="p")
    with pytest.raises(ServingError, match="outside \\[0, 1\\]"):
        check_predictions(np.array([0.1, np.nan, 2.0]), 3, source="p")


# -- predictors and execution ---------------------------------------------------------------------
class CountingPredictor:
    def __init__(self, fail_rows_over: int | None = None) -> None:
        self.calls: list[int] = []
        self.fail_rows_over = fail_rows_over

    def predict(self, raw: RawBatch) -> np.ndarray:
        self.calls.append(len(raw))
        if self.fail_rows_over is not None and len(raw) > self.fail_rows_over:
            raise RuntimeError("too big")
        return (raw.ids[:, 0] % 10 / 10).astype(np.float32)


def test_execute_runs_valid_requests_as_one_batch() -> None:
    good1, good2 = raw_batch(3, seed=1), raw_batch(5, seed=2)
    bad = list(_wire(raw_batch(2)))
    bad[1] = np.full_like(bad[1], -5)
    p = CountingPredictor()
    results = execute_requests(p, [_wire(good1), tuple(bad), _wire(good2)], CONTRACT, source="t")  # type: ignore[list-item]
    assert p.calls == [8]  # one call for the 3 + 5 valid rows
    assert isinstance(results[1], InvalidRequestError)
    np.testing.assert_allclose(results[0], (good1.ids[:, 0] % 10 / 10).astype(np.float32))  # type: ignore[arg-type]
    np.testing.assert_allclose(results[2], (good2.ids[:, 0] % 10 / 10).astype(np.float32))  # type: ignore[arg-type]


def test_execute_isolates_a_failing_request() -> None:
    p = CountingPredictor(fail_rows_over=4)
    results = execute_requests(p, [_wire(raw_batch(3)), _wire(raw_batch(6))], CONTRACT, source="t")
    assert p.calls == [9, 3, 6]  # joint call failed, then one call per request
    assert isinstance(results[0], np.ndarray) and isinstance(results[1], RuntimeError)


# -- config, ports, install ------------------------------------------------------------------------
def test_serving_config_is_strict() -> None:
    cfg = from_mapping(ServingConfig, {"max_batch_size": 128, "protocol": "http"}, source="t.yaml")
    assert cfg.max_batch_size == 128 and cfg.protocol == "http"
    with pytest.raises(ConfigError, match="unknown key 'max_batch'"):
        from_mapping(ServingConfig, {"max_batch": 1}, source="t.yaml")
    with pytest.raises(ConfigError, match="must differ"):
        from_mapping(ServingConfig, {"http_port": 9000, "grpc_port": 9000}, source="t.yaml")
    with pytest.raises(ConfigError, match="preferred_batch_sizes"):
        from_mapping(ServingConfig, {"max_batch_size": 8, "preferred_batch_sizes": [16]}, source="t.yaml")


def test_port_helpers() -> None:
    a, b = free_ports(2)
    assert a != b and port_is_free(a)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not port_is_free(s.getsockname()[1])


def test_prepare_triton_copies_once_and_repairs(tmp_path: Path) -> None:
    dest = tmp_path / "triton"
    install = prepare_triton(dest)
    stub = install.backend_dir / "python" / STUB
    assert install.server_bin.is_file() and os.access(install.server_bin, os.X_OK)
    assert stub.is_file() and os.access(stub, os.X_OK)
    assert not (dest / "python_backend_stubs").exists()
    env = install.process_env({"PATH": "/usr/bin"})
    assert str(locate_wheel().libs_dir) in env["LD_LIBRARY_PATH"] and env["PATH"].endswith(":/usr/bin")
    assert (Path(env["PYTHONPATH"]) / "recdistill" / "__init__.py").is_file()
    marker_mtime = (dest / MARKER).stat().st_mtime_ns
    prepare_triton(dest)
    assert (dest / MARKER).stat().st_mtime_ns == marker_mtime  # reused
    stub.unlink()
    prepare_triton(dest)
    assert stub.is_file() and (dest / MARKER).stat().st_mtime_ns != marker_mtime  # rebuilt


def test_missing_wheel_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", absent)
    with pytest.raises(
        ServingError, match="nvidia-pytriton is not installed .* pip install nvidia-pytriton==0.7.0"
    ):
        locate_wheel()
