"""Run the stages in order, skipping those whose inputs are unchanged (see ``manifest.py``)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from recdistill.config import to_mapping
from recdistill.errors import ConfigError
from recdistill.pipeline.code_version import code_inputs
from recdistill.pipeline.context import RunContext
from recdistill.pipeline.manifest import Manifest, StageRecord, fingerprint
from recdistill.pipeline.preflight import preflight
from recdistill.pipeline.registry import all_stages, find_stage, stage_names
from recdistill.pipeline.stages import Stage


def run_pipeline(
    ctx: RunContext,
    *,
    from_stage: str | None = None,
    until: str | None = None,
    stages: Sequence[Stage] | None = None,
    only: str | None = None,
) -> Manifest:
    """Run every stage (default: :func:`all_stages`); ``from_stage`` forces that stage and all after
    it to rerun; ``only`` runs that one stage (forced) and nothing else."""
    stages = all_stages() if stages is None else stages
    if only is not None:
        stages = [s for s in stages if s.name == only] or [find_stage(only)]
        from_stage = until = only
    names = [s.name for s in stages]
    for opt, value in (("--from", from_stage), ("--until", until)):
        if value is not None and value not in names:
            raise ConfigError(f"{opt} {value!r} is not a stage; stages are {', '.join(names)}")
    preflight(ctx)
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load(ctx.run_dir)
    manifest.config = to_mapping(ctx.cfg)
    forced = False
    total = time.perf_counter()
    for i, stage in enumerate(stages, 1):
        forced = forced or stage.name == from_stage
        inputs = {**stage.inputs(ctx), **code_inputs(stage.code)}
        fp = fingerprint(inputs)
        tag = f"[{i}/{len(stages)}] {stage.name:<14}"
        if not forced and manifest.is_current(stage.name, fp, stage.outputs(ctx)):
            print(f"{tag} skipped (inputs unchanged)", flush=True)
        else:
            print(f"{tag} {stage.description} ...", flush=True)
            manifest.forget(stage.name)
            marker = ctx.run_dir / ".in_progress" / stage.name
            resume = marker.exists() and marker.read_text() == fp and not forced
            marker.parent.mkdir(exist_ok=True)
            marker.write_text(fp)
            t0 = time.perf_counter()
            metrics = stage.run(ctx, resume)
            seconds = time.perf_counter() - t0
            marker.unlink(missing_ok=True)  # the ranks of a torchrun launch share the marker
            manifest.record(
                stage.name,
                StageRecord(
                    fingerprint=fp,
                    inputs=inputs,
                    outputs=stage.outputs(ctx),
                    seconds=round(seconds, 2),
                    finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
                    metrics=metrics,
                ),
            )
            print(f"{tag} done in {seconds:.1f}s", flush=True)
        if stage.name == until:
            break
    print(f"run finished in {time.perf_counter() - total:.1f}s -> {ctx.run_dir}", flush=True)
    return manifest


__all__ = ["run_pipeline", "stage_names"]
