"""Checks that run before any stage: a bad configuration fails at once, naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

from recdistill.data.schema import Schema
from recdistill.data.split_log import split_column
from recdistill.errors import ConfigError
from recdistill.pipeline.context import RunContext

SERVABLE = ("teacher", "mlp", "gbdt", "noop")
_GLOB_CHARS = set("*?[")


def preflight(ctx: RunContext) -> None:
    """Raise :class:`ConfigError` for missing files, unknown model names and impossible combinations."""
    cfg, src = ctx.cfg, ctx.config_path
    d = cfg.data
    if d.source == "files":
        _check_files(ctx)
    target = cfg.serving.ranker_target
    if target is not None and target not in SERVABLE:
        raise ConfigError(
            f"{src}: serving.ranker_target {target!r} is not a served model; choose one of {', '.join(SERVABLE)}"
        )
    if cfg.loadtest.candidates > cfg.serving.max_batch_size:
        raise ConfigError(
            f"{src}: loadtest.candidates ({cfg.loadtest.candidates}) exceeds serving.max_batch_size "
            f"({cfg.serving.max_batch_size}); lower the one or raise the other"
        )
    _check_distill_mode(ctx)
    schema = _schema_if_known(ctx)
    if schema is not None and cfg.distill.listwise > 0 and schema.request_id is None:
        raise ConfigError(
            f"{src}: distill.listwise needs requests to rank within, but the schema has no request_id; "
            "set distill.listwise: 0 or add a request id column"
        )


def _check_distill_mode(ctx: RunContext) -> None:
    """``distill.mode`` online or self: a kd objective (the hard twin is trained anyway); shared
    tables as wide as a student may be."""
    dcfg, src = ctx.cfg.distill, ctx.config_path
    if dcfg.mode != "offline" and dcfg.kind != "kd":
        raise ConfigError(
            f"{src}: distill.mode {dcfg.mode} distils, but distill.kind is {dcfg.kind}; set distill.kind: kd "
            "(the hard-label twin is trained in every mode)"
        )
    if dcfg.mode == "online" and dcfg.online.share_embeddings and ctx.cfg.teacher.embedding_dim > 64:
        raise ConfigError(
            f"{src}: distill.online.share_embeddings gives the student the teacher's "
            f"{ctx.cfg.teacher.embedding_dim}-wide tables, more than a student's 64; lower "
            "teacher.embedding_dim or set share_embeddings: false"
        )


def _check_files(ctx: RunContext) -> None:
    """``data.source: files``: every path names something, a schema is known, the split can be made."""
    d, src = ctx.cfg.data, ctx.config_path
    if d.path is None:
        for split in ("train", "valid", "test"):
            if getattr(d, split) is None:
                raise ConfigError(
                    f"{src}: data.{split} is required with data.source: files (path of the {split} split), "
                    "or give one log as data.path with data.split"
                )
    for key in ("path", "train", "valid", "test", "transfer", "schema"):
        path = getattr(d, key)
        if path is not None and not _GLOB_CHARS & set(path) and not Path(path).exists():
            raise ConfigError(f"{src}: data.{key} names {path}, which does not exist; fix the path")
    ctx.sources()  # globs that match nothing, folders without data files
    if d.schema is None and ctx.source_format() != "criteo":
        raise ConfigError(
            f"{src}: data.schema is required for {ctx.source_format()} files (path of schema.json; "
            "`recdistill init-schema FILE --label COL` writes one)"
        )
    if d.split is not None:
        try:
            split_column(d.split, ctx.source_schema())
        except ConfigError as e:
            raise ConfigError(f"{src}: {e}") from e


def _schema_if_known(ctx: RunContext) -> Schema | None:
    d = ctx.cfg.data
    if d.source in ("files", "movielens100k"):
        return ctx.source_schema()
    return None  # generated data: the generator writes a schema every student can use
