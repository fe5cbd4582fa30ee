"""The latency benchmark's inputs: a finished run's context and its own Triton model repository.

``load_run(run_dir)`` rebuilds the run's :class:`RunContext` from the config recorded in
``<run_dir>/manifest.json`` (so the benchmark serves with the run's own serving settings).
``build_bench_repository(ctx)`` writes ``<run_dir>/bench_repository`` from the run's ready version
folders (``export/<model>/``) through the serving layer's repository writer::

    teacher         teacher_torch    (export/teacher)
    mlp             mlp_onnx         (the run's served MLP: mlp_distilled_transfer or mlp_distilled)
    gbdt            gbdt_compiled    (export/gbdt_distilled)
    gbdt_lightgbm   gbdt_lightgbm    the same trained trees (model.txt + featurizer), LightGBM's predictor
    noop            noop             returns a constant: the floor of this serving path
    ranker          ensemble -> mlp  (written by every repository; not measured)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from recdistill.config import RunConfig
from recdistill.config.loader import from_mapping
from recdistill.data.contract import InputContract
from recdistill.errors import ArtefactError
from recdistill.io_utils import read_json
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.run_models import served_models, version_dirs
from recdistill.predictors.gbdt import GBDT_LIGHTGBM
from recdistill.predictors.registry import PREDICTOR_FILE
from recdistill.students.gbdt.train import FEATURIZER_DIR, MODEL_FILE
from serving.repository import ModelSpec, write_repository
from serving.stages import NOOP

BENCH_REPOSITORY = "bench_repository"
GBDT_NATIVE = "gbdt_lightgbm"  # served name of the LightGBM-native GBDT
ORDER = ("teacher", "mlp", "gbdt", GBDT_NATIVE, NOOP)  # measurement and table order


@dataclass(frozen=True)
class BenchModel:
    """A served model of the benchmark: its name, predictor kind, source version folder and the
    run's name for the trained model (``mlp_distilled_transfer``, ...)."""

    name: str
    kind: str
    source: Path | None  # None for noop
    trained: str | None = None


def load_run(run_dir: Path) -> RunContext:
    """The run's context from ``<run_dir>/manifest.json`` (``run_dir`` replaces the recorded one)."""
    manifest = run_dir / "manifest.json"
    if not manifest.is_file():
        raise ArtefactError(
            f"{manifest}: not found; --run-dir must be a finished run (`recdistill run --config ...`)"
        )
    recorded = read_json(manifest).get("config")
    if not isinstance(recorded, dict):
        raise ArtefactError(f"{manifest}: has no 'config' section; rerun the pipeline to record it")
    cfg = from_mapping(RunConfig, recorded, source=f"{manifest} (config)")
    return RunContext(dataclasses.replace(cfg, run_dir=str(run_dir)), config_path=str(manifest))


def bench_models(ctx: RunContext) -> list[BenchModel]:
    """The models the run can serve, in :data:`ORDER` (a run without a GBDT student has fewer)."""
    found: dict[str, BenchModel] = {}
    dirs = version_dirs(ctx)
    chosen = served_models(read_json(ctx.run_dir / "evaluation.json"))  # the pipeline's own choice
    for served, run_name in chosen.items():
        version_dir = dirs[run_name]
        kind = str(read_json(version_dir / PREDICTOR_FILE)["kind"])
        found[served] = BenchModel(served, kind, version_dir, run_name)
        if served == "gbdt":
            found[GBDT_NATIVE] = BenchModel(GBDT_NATIVE, GBDT_LIGHTGBM, version_dir, run_name)
    found[NOOP] = BenchModel(NOOP, "noop", None)
    return [found[n] for n in ORDER if n in found]


def _spec(m: BenchModel) -> ModelSpec:
    if m.source is None:
        return ModelSpec(name=m.name, predictor={"kind": m.kind})
    files = {p.name: p for p in m.source.iterdir() if p.name != PREDICTOR_FILE}
    predictor = read_json(m.source / PREDICTOR_FILE)
    if m.name == GBDT_NATIVE:
        # the same model.txt + featurizer/; neither trees.so nor the compiled export record
        files = {k: v for k, v in files.items() if k in (MODEL_FILE, FEATURIZER_DIR)}
        predictor = {"kind": GBDT_LIGHTGBM}
    return ModelSpec(name=m.name, predictor=predictor, files=files)


def build_bench_repository(ctx: RunContext, models: list[BenchModel]) -> Path:
    """Write (replace) ``<run_dir>/bench_repository`` holding ``models`` (+ ``ranker`` -> mlp)."""
    path = ctx.run_dir / BENCH_REPOSITORY
    names = [m.name for m in models]
    serving = dataclasses.replace(ctx.cfg.serving, ranker_target="mlp" if "mlp" in names else names[0])
    contract = InputContract.from_schema(ctx.schema())
    return write_repository(path, [_spec(m) for m in models], contract=contract, config=serving)
