"""Triton model repository: config.pbtxt generation, repository writing and validation.

Layout (one folder per model, the unit of deployment)::

    <repository>/<model>/config.pbtxt
    <repository>/<model>/1/model.py          copied from serving/backends/model.py
    <repository>/<model>/1/predictor.json    {"kind": "noop", ...}
    <repository>/<model>/1/<artefacts>       whatever the predictor kind needs
    <repository>/ranker/config.pbtxt          ensemble alias: one step -> the chosen model
    <repository>/ranker/1/                    (empty; Triton wants a version folder)

Every ``config.pbtxt`` is produced by :func:`model_config_pbtxt` (a ``ModelConfig`` protobuf
printed with ``text_format``), and :func:`validate_repository` parses them back with the same
protobuf, so the generator and the checker cannot disagree on syntax.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import text_format  # type: ignore[import-untyped, unused-ignore]
from tritonclient.grpc import model_config_pb2 as mc

from recdistill.config.serving import ServingConfig
from recdistill.data.contract import InputContract
from recdistill.errors import ArtefactError, ServingError
from recdistill.io_utils import atomic_path, atomic_write_json
from recdistill.predictors.registry import PREDICTOR_FILE, missing_files, read_predictor_json
from serving.contract import CONTRACT_PARAMETER, TensorSpec, contract_io, input_specs, output_specs

CONFIG_FILE = "config.pbtxt"
BACKEND_MODEL_PY = Path(__file__).parent / "backends" / "model.py"
RANKER = "ranker"
SUPPORTED = ("python backend", "ensemble platform")  # what the pytriton wheel can run


@dataclass(frozen=True)
class EnsembleStep:
    """One ensemble step: run ``model_name``; maps are ``{step tensor: ensemble tensor}``."""

    model_name: str
    input_map: Mapping[str, str]
    output_map: Mapping[str, str]
    model_version: int = -1


def model_config_pbtxt(
    *,
    name: str,
    backend: str = "python",
    platform: str | None = None,
    max_batch_size: int,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    dynamic_batching: bool = True,
    max_queue_delay_us: int = 0,
    preferred_batch_sizes: Sequence[int] = (),
    instance_count: int = 1,
    warmup: bool = False,
    warmup_batch_sizes: Sequence[int] = (1,),
    version_policy: str | Sequence[int] = "latest",
    parameters: Mapping[str, str] | None = None,
    ensemble_steps: Sequence[EnsembleStep] = (),
) -> str:
    """The text of one ``config.pbtxt``.

    ``platform="ensemble"`` makes an ensemble (``ensemble_steps`` required; no dynamic batching,
    instances or warm-up). Otherwise ``backend`` runs ``instance_count`` CPU instances. Warm-up
    sends ``zero_data`` for every input at each of ``warmup_batch_sizes``: zeros are valid raw ids
    and finite dense values, whereas Triton's ``random_data`` would produce ids below -1 that the
    backend rejects, failing the load. ``version_policy`` is ``"latest"``, ``"all"`` or a list of
    version numbers.
    """
    where = f"config for model {name!r}"
    cfg = mc.ModelConfig(name=name, max_batch_size=max_batch_size)
    ensemble = platform == "ensemble"
    if platform is not None:
        cfg.platform = platform
    else:
        cfg.backend = backend
    if max_batch_size < 0:
        raise ServingError(f"{where}: max_batch_size must be >= 0, got {max_batch_size}")
    for spec in inputs:
        cfg.input.add(name=spec.name, data_type=_dtype(spec.dtype, where), dims=list(spec.dims))
    for spec in outputs:
        cfg.output.add(name=spec.name, data_type=_dtype(spec.dtype, where), dims=list(spec.dims))
    if isinstance(version_policy, str):
        if version_policy == "latest":
            cfg.version_policy.latest.num_versions = 1
        elif version_policy == "all":
            cfg.version_policy.all.SetInParent()
        else:
            raise ServingError(f"{where}: version_policy must be 'latest', 'all' or a list of versions")
    else:
        cfg.version_policy.specific.versions.extend(int(v) for v in version_policy)
    for key, value in (parameters or {}).items():
        cfg.parameters[key].string_value = value
    if ensemble:
        if not ensemble_steps:
            raise ServingError(f"{where}: an ensemble needs at least one step")
        if dynamic_batching or warmup:
            raise ServingError(f"{where}: an ensemble takes no dynamic_batching or warmup (its steps batch)")
        for step in ensemble_steps:
            s = cfg.ensemble_scheduling.step.add(model_name=step.model_name, model_version=step.model_version)
            s.input_map.update(dict(step.input_map))
            s.output_map.update(dict(step.output_map))
        return _render(cfg)
    if ensemble_steps:
        raise ServingError(f"{where}: ensemble_steps need platform='ensemble'")
    if instance_count < 1:
        raise ServingError(f"{where}: instance_count must be >= 1, got {instance_count}")
    cfg.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=instance_count)
    if dynamic_batching:
        if max_batch_size < 1:
            raise ServingError(f"{where}: dynamic batching needs max_batch_size >= 1")
        cfg.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
        cfg.dynamic_batching.preferred_batch_size.extend(int(b) for b in preferred_batch_sizes)
    if warmup:
        for bs in warmup_batch_sizes:
            if not 1 <= bs <= max(max_batch_size, 1):
                raise ServingError(f"{where}: warm-up batch size {bs} is not in [1, {max_batch_size}]")
            w = cfg.model_warmup.add(name=f"zero_batch_{bs}", batch_size=bs)
            for spec in inputs:
                w.inputs[spec.name].data_type = _dtype(spec.dtype, where)
                w.inputs[spec.name].dims.extend(spec.dims)
                w.inputs[spec.name].zero_data = True
    return _render(cfg)


def ranker_config_pbtxt(
    *, target: str, contract: InputContract, max_batch_size: int, name: str = RANKER
) -> str:
    """An ensemble ``name`` with one step forwarding the contract tensors to model ``target``."""
    inputs, outputs = input_specs(contract), output_specs()
    return model_config_pbtxt(
        name=name,
        platform="ensemble",
        max_batch_size=max_batch_size,
        inputs=inputs,
        outputs=outputs,
        dynamic_batching=False,
        parameters={CONTRACT_PARAMETER: contract.to_json(), "ranker_target": target},
        ensemble_steps=[
            EnsembleStep(
                model_name=target,
                input_map={t.name: t.name for t in inputs},
                output_map={t.name: t.name for t in outputs},
            )
        ],
    )


@dataclass(frozen=True)
class ModelSpec:
    """A python-backend model to write: ``predictor`` becomes predictor.json (needs ``kind``);
    ``files`` maps names in the version folder to source files or folders that are copied."""

    name: str
    predictor: Mapping[str, Any]
    files: Mapping[str, Path] = field(default_factory=dict)
    instance_count: int | None = None  # None: ServingConfig.instance_count


def write_repository(
    path: Path, models: Sequence[ModelSpec], *, contract: InputContract, config: ServingConfig
) -> Path:
    """Write a complete repository (the models, plus ``ranker`` -> ``config.ranker_target`` or the
    first model), validate it, then move it onto ``path`` atomically."""
    if not models:
        raise ServingError(f"{path}: a model repository needs at least one model")
    names = [m.name for m in models]
    if len(set(names)) != len(names) or RANKER in names:
        raise ServingError(f"{path}: model names must be unique and not {RANKER!r}, got {names}")
    target = config.ranker_target or names[0]
    if target not in names:
        raise ServingError(f"{path}: ranker target {target!r} is not one of the models {names}")
    with atomic_path(path) as tmp:
        for m in models:
            _write_python_model(tmp, m, contract=contract, config=config)
        ranker_dir = tmp / RANKER
        (ranker_dir / "1").mkdir(parents=True)
        (ranker_dir / CONFIG_FILE).write_text(
            ranker_config_pbtxt(target=target, contract=contract, max_batch_size=config.max_batch_size)
        )
        validate_repository(tmp, expect_contract=contract)
    return Path(path)


def _write_python_model(root: Path, m: ModelSpec, *, contract: InputContract, config: ServingConfig) -> None:
    version_dir = root / m.name / "1"
    version_dir.mkdir(parents=True)
    if "kind" not in m.predictor:
        raise ServingError(f"model {m.name!r}: predictor options need a 'kind'")
    atomic_write_json(version_dir / PREDICTOR_FILE, dict(m.predictor))
    shutil.copy2(BACKEND_MODEL_PY, version_dir / "model.py")
    for dest, src in m.files.items():
        src = Path(src)
        if src.is_dir():
            shutil.copytree(src, version_dir / dest)
        elif src.is_file():
            shutil.copy2(src, version_dir / dest)
        else:
            raise ArtefactError(f"model {m.name!r}: artefact {src} (for {dest!r}) does not exist")
    text = model_config_pbtxt(
        name=m.name,
        max_batch_size=config.max_batch_size,
        inputs=input_specs(contract),
        outputs=output_specs(),
        dynamic_batching=config.dynamic_batching,
        max_queue_delay_us=config.max_queue_delay_us,
        preferred_batch_sizes=config.preferred_batch_sizes,
        instance_count=m.instance_count or config.instance_count,
        warmup=config.warmup,
        warmup_batch_sizes=sorted({1, config.max_batch_size}),
        parameters={CONTRACT_PARAMETER: contract.to_json()},
    )
    (root / m.name / CONFIG_FILE).write_text(text)


def _dtype(name: str, where: str) -> int:
    try:
        return int(mc.DataType.Value(name))
    except ValueError:
        raise ServingError(f"{where}: unknown Triton dtype {name!r} (e.g. TYPE_FP32, TYPE_INT64)") from None


def _render(cfg: mc.ModelConfig) -> str:
    return "# generated by serving.repository; do not edit by hand\n" + text_format.MessageToString(cfg)


# -- validation -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Repository:
    """A validated repository: its path, the shared input contract and each model's parsed config."""

    path: Path
    contract: InputContract
    models: Mapping[str, mc.ModelConfig]


def read_model_config(model_dir: Path) -> mc.ModelConfig:
    """Parse ``<model_dir>/config.pbtxt``; errors name the model and the line."""
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        raise ServingError(
            f"model {model_dir.name!r}: {path} not found; every model folder needs a {CONFIG_FILE}"
        )
    cfg = mc.ModelConfig()
    try:
        text_format.Parse(path.read_text(), cfg)
    except text_format.ParseError as e:
        raise ServingError(f"model {model_dir.name!r}: {path} is not a valid ModelConfig: {e}") from e
    return cfg


def validate_repository(path: Path, *, expect_contract: InputContract | None = None) -> Repository:
    """Check every model folder under ``path`` before a server is started on it.

    Checks: each config parses; its name matches the folder; backend is python or platform is
    ensemble; inputs/outputs match the contract (``expect_contract``, or else the first model's,
    since every served model shares one contract); the served version folders exist and hold
    ``model.py``, ``predictor.json`` (a known kind) and that kind's artefacts; ensemble steps name
    models in the repository. Raises :class:`ServingError` naming the model and the field.
    """
    root = Path(path)
    if not root.is_dir():
        raise ServingError(f"{root}: model repository not found (expected a folder of model folders)")
    model_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not model_dirs:
        raise ServingError(f"{root}: model repository holds no model folders")
    configs = {d.name: read_model_config(d) for d in model_dirs}
    contract = expect_contract
    for d in model_dirs:
        cfg = configs[d.name]
        where = f"{root}: model {d.name!r}"
        if cfg.name and cfg.name != d.name:
            raise ServingError(f"{where}: config.pbtxt says name {cfg.name!r}; it must match the folder name")
        is_ensemble = cfg.platform == "ensemble"
        if not is_ensemble and (cfg.platform or cfg.backend != "python"):
            got = f"platform {cfg.platform!r}" if cfg.platform else f"backend {cfg.backend!r}"
            raise ServingError(f"{where}: {got} is not supported; use one of {list(SUPPORTED)}")
        if cfg.max_batch_size < 1:
            raise ServingError(
                f"{where}: max_batch_size is {cfg.max_batch_size}; the contract needs a batch dim (>= 1)"
            )
        param = (
            cfg.parameters[CONTRACT_PARAMETER].string_value if CONTRACT_PARAMETER in cfg.parameters else ""
        )
        if not param:
            raise ServingError(f"{where}: parameters lack {CONTRACT_PARAMETER!r} (the true feature widths)")
        own = InputContract.from_json(param, where=f"{where}: parameter {CONTRACT_PARAMETER!r}")
        if contract is None:
            contract = own
        elif own != contract:
            raise ServingError(f"{where}: input contract {own} differs from the expected {contract}")
        _check_tensors(where, "input", list(cfg.input), input_specs(contract))
        _check_tensors(where, "output", list(cfg.output), output_specs())
        versions = _served_versions(where, d, cfg)
        if is_ensemble:
            _check_ensemble(where, cfg, configs)
        else:
            for v in versions:
                _check_python_version_dir(where, d / str(v))
    assert contract is not None
    return Repository(path=root, contract=contract, models=configs)


def _check_tensors(where: str, role: str, got: list[Any], expected: Sequence[TensorSpec]) -> None:
    by_name = {t.name: t for t in got}
    want = [t.name for t in expected]
    if sorted(by_name) != sorted(want):
        raise ServingError(f"{where}: {role}s are {sorted(by_name)}, expected {want}")
    for spec in expected:
        t = by_name[spec.name]
        dtype = mc.DataType.Name(t.data_type)
        if dtype != spec.dtype:
            raise ServingError(f"{where}: {role} {spec.name!r} has data_type {dtype}, expected {spec.dtype}")
        if tuple(t.dims) != spec.dims:
            raise ServingError(
                f"{where}: {role} {spec.name!r} has dims {list(t.dims)}, expected {list(spec.dims)}"
            )


def _served_versions(where: str, model_dir: Path, cfg: mc.ModelConfig) -> list[int]:
    present = sorted(
        int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0
    )
    if not present:
        raise ServingError(f"{where}: no version folder (e.g. {model_dir / '1'})")
    policy = cfg.version_policy.WhichOneof("policy_choice")
    if policy == "specific":
        wanted = list(cfg.version_policy.specific.versions)
        lacking = [v for v in wanted if v not in present]
        if lacking:
            raise ServingError(f"{where}: version_policy names versions {lacking} that have no folder")
        return wanted
    if policy == "all":
        return present
    n = cfg.version_policy.latest.num_versions or 1
    return present[-n:]


def _check_python_version_dir(where: str, version_dir: Path) -> None:
    if not (version_dir / "model.py").is_file():
        raise ServingError(
            f"{where}: {version_dir / 'model.py'} not found (the backend glue is copied there)"
        )
    try:
        kind, _ = read_predictor_json(version_dir)
    except ArtefactError as e:
        raise ServingError(f"{where}: {e}") from e
    missing = missing_files(version_dir, kind)
    if missing:
        raise ServingError(f"{where}: predictor kind {kind!r} needs {missing} in {version_dir}")


def _check_ensemble(where: str, cfg: mc.ModelConfig, configs: Mapping[str, mc.ModelConfig]) -> None:
    steps = list(cfg.ensemble_scheduling.step)
    if not steps:
        raise ServingError(f"{where}: ensemble_scheduling has no step")
    for step in steps:
        if step.model_name not in configs:
            raise ServingError(
                f"{where}: ensemble step names model {step.model_name!r}, which is not in the repository "
                f"(models: {sorted(configs)})"
            )
        if step.model_name == cfg.name:
            raise ServingError(f"{where}: ensemble step points at itself")


def describe(repository: Repository) -> str:
    """One line per model, e.g. for ``recdistill serve`` output."""
    lines = []
    for name, cfg in repository.models.items():
        target = ", ".join(s.model_name for s in cfg.ensemble_scheduling.step)
        kind = f"ensemble -> {target}" if cfg.platform == "ensemble" else f"{cfg.backend}"
        lines.append(f"{name}: {kind}, max_batch_size {cfg.max_batch_size}")
    return "\n".join(lines) + ("\n" if lines else "")


__all__ = [
    "BACKEND_MODEL_PY",
    "RANKER",
    "EnsembleStep",
    "ModelSpec",
    "Repository",
    "contract_io",
    "describe",
    "model_config_pbtxt",
    "ranker_config_pbtxt",
    "read_model_config",
    "validate_repository",
    "write_repository",
]
