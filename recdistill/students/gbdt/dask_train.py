"""The LightGBM student on a Dask cluster (``gbdt.distributed.engine: dask``).

The same student as :func:`.train.train_gbdt` (label ``alpha * y + (1 - alpha) * p_teacher``,
transfer rows with label ``p_teacher``, the featurizer artefact, the LightGBM parameters, the
output folder), with no split ever gathered in one process:

1. every split file is cut into row ranges (:mod:`recdistill.row_ranges`), one Dask partition
   each, at least one training partition per worker; the soft labels of every split are checked
   on the client from their manifest and footers before any task runs;
2. pass 1 and pass 2 of the featurizer fit (:mod:`.fit_stats`) run per partition on the workers
   and are merged in a tree of tasks; the featurizer is built once on the client and broadcast;
3. the workers build their training matrices (out-of-fold encodings) and labels, and the
   validation matrices (full encodings);
4. ``lightgbm.DaskLGBMRegressor(objective="cross_entropy")`` grows ``num_boost_round`` trees,
   data-parallel over the workers that hold training partitions;
5. ``lightgbm.dask`` has no early stopping, so the iteration is chosen afterwards by the same
   rule on the validation split: per-iteration validation log loss summed over the partitions
   on the workers, the lowest kept, the search stopped ``early_stopping_rounds`` after it;
6. ``model.txt`` (truncated), ``featurizer/`` and ``metrics.json`` are written as by the
   single-process student, so ``recdistill export`` compiles and serves it unchanged.

Workers of a remote scheduler must import recdistill and read the run's files at the same paths
(a shared file system).
"""

from __future__ import annotations

import logging
import math
import operator
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np

from recdistill.config.gbdt import GbdtDistributedConfig, GbdtStudentConfig
from recdistill.data.batch import F32, RawBatch, Targets
from recdistill.data.raw import raw_batch_from_frame, targets_from_frame
from recdistill.data.readers import count_rows
from recdistill.data.schema import Schema
from recdistill.data.splits import find_split, split_path
from recdistill.errors import ConfigError, DataError
from recdistill.metrics import logloss
from recdistill.probability import sigmoid
from recdistill.row_ranges import plan_ranges, read_row_range
from recdistill.students.gbdt import fit_stats
from recdistill.students.gbdt.features import GbdtFeaturizer
from recdistill.students.gbdt.train import (
    check_probs,
    lgb_feature_names,
    lgb_params,
    save_student,
    student_metrics,
)
from recdistill.students.soft_labels import SplitSoftLabels, check_soft_labels, load_soft_label_rows

if TYPE_CHECKING:
    from distributed import Client, Future

_FAN_IN = 8  # partial statistics merged per task


@contextmanager
def dask_client(cfg: GbdtDistributedConfig) -> Iterator[Client]:
    """A client of a new ``LocalCluster`` on 127.0.0.1 (``scheduler: local``, closed on exit) or of
    the running scheduler at ``cfg.scheduler``, with ``cfg.workers`` workers joined; waits at most
    ``connect_timeout_s`` seconds for each and fails with a :class:`ConfigError` naming the address."""
    from distributed import Client, LocalCluster

    if cfg.scheduler == "local":
        with (
            LocalCluster(
                n_workers=cfg.workers,
                threads_per_worker=cfg.threads_per_worker,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    where = f"gbdt.distributed.scheduler {cfg.scheduler!r}"
    try:
        client = Client(cfg.scheduler, timeout=cfg.connect_timeout_s)
    except (OSError, TimeoutError, ValueError) as e:  # refused / no answer / not an address
        raise ConfigError(
            f"{where}: no Dask scheduler answered within {cfg.connect_timeout_s:g} s ({e}); start one "
            "(`dask scheduler`, then `dask worker ADDRESS` on each machine) or use scheduler: local"
        ) from e
    try:
        try:
            client.wait_for_workers(cfg.workers, timeout=cfg.connect_timeout_s)
        except TimeoutError as e:
            have = len(client.scheduler_info().get("workers", {}))
            raise ConfigError(
                f"{where}: {have} of gbdt.distributed.workers={cfg.workers} Dask workers joined within "
                f"{cfg.connect_timeout_s:g} s; start more workers or lower gbdt.distributed.workers"
            ) from e
        yield client
    finally:
        client.close()


@dataclass(frozen=True)
class Partition:
    """Rows ``[start, stop)`` of one split file; ``offset``: position of its first row among the
    fitted rows (training rows, then transfer rows); ``soft``: the split's checked soft labels."""

    split: str
    path: str
    start: int
    stop: int
    offset: int
    soft: SplitSoftLabels | None

    def __len__(self) -> int:
        return self.stop - self.start


def plan_partitions(
    path: Path,
    split: str,
    part_rows: int,
    soft: SplitSoftLabels | None,
    *,
    offset: int = 0,
    at_least: int = 1,
) -> list[Partition]:
    """``path`` cut into partitions of at most ``part_rows`` rows, at least ``at_least`` of them."""
    n = count_rows(path)
    rows = max(1, min(part_rows, math.ceil(n / at_least)))
    return [
        Partition(split, str(path), r.start, r.stop, offset + r.start, soft) for r in plan_ranges(n, rows)
    ]


# -- tasks (run on the workers) ---------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    """What every task needs besides its partition (small; sent with each task)."""

    schema: Schema
    cfg: GbdtStudentConfig
    hard: bool


def _load(part: Partition, job: _Job) -> tuple[RawBatch, Targets, F32 | None]:
    df = read_row_range(part.path, part.start, part.stop)
    where = f"{part.path} rows [{part.start}, {part.stop})"
    raw, t = (
        raw_batch_from_frame(df, job.schema, source=where),
        targets_from_frame(df, job.schema, source=where),
    )
    probs = None
    if part.soft is not None:
        logits = load_soft_label_rows(part.soft, part.start, part.stop, t.row_key, row_key=job.schema.row_key)
        probs = sigmoid(logits).astype(np.float32)
        check_probs(f"teacher_probs ({where})", probs, len(raw))
    return raw, t, probs


def _fit_rows(part: Partition, job: _Job) -> tuple[fit_stats.FitRows, F32]:
    """A fitted partition's rows and their training label (see :func:`.train.train_gbdt`)."""
    raw, t, probs = _load(part, job)
    where = f"{part.path} rows [{part.start}, {part.stop})"
    y = t.label.astype(np.float32)
    if part.split == "transfer":
        assert probs is not None
        values = {"click": np.full(len(raw), np.nan), "teacher": probs.astype(np.float64)}
        return fit_stats.FitRows(raw, values, t.request_id, part.offset), probs
    if np.isnan(y).any():
        raise DataError(
            f"train labels ({where}): {int(np.isnan(y).sum())} rows have no label; the train split must be labelled"
        )
    if job.hard or probs is None:
        return fit_stats.FitRows(raw, {"click": y.astype(np.float64)}, t.request_id, part.offset), y
    target = (job.cfg.alpha * y + (1.0 - job.cfg.alpha) * probs).astype(np.float32)
    values = {"click": y.astype(np.float64), "teacher": probs.astype(np.float64)}
    return fit_stats.FitRows(raw, values, t.request_id, part.offset), target


def _vocab_task(part: Partition, job: _Job) -> fit_stats.VocabStats:
    return fit_stats.VocabStats.collect(job.schema, _fit_rows(part, job)[0], job.cfg)


def _means_task(part: Partition, job: _Job, plan: fit_stats.EncoderPlan) -> dict[str, Any]:
    return fit_stats.collect_means(plan, _fit_rows(part, job)[0], job.cfg)


def _train_task(
    part: Partition, job: _Job, featurizer: GbdtFeaturizer, fit: fit_stats.FittedEncoders
) -> tuple[F32, F32]:
    rows, target = _fit_rows(part, job)
    return featurizer.training_matrix(rows.raw, fit.out_of_fold(rows)), target


def _valid_task(part: Partition, job: _Job, featurizer: GbdtFeaturizer) -> tuple[F32, F32, F32 | None]:
    raw, t, probs = _load(part, job)
    y = t.label.astype(np.float32)
    if np.isnan(y).any():
        raise DataError(
            f"valid labels ({part.path}): rows without a label; early stopping needs a labelled validation split"
        )
    return featurizer.transform(raw), y, probs


def _curve_task(model: str, valid: tuple[F32, F32, F32 | None]) -> np.ndarray:
    """Summed validation log loss ``[T]`` of the first ``1..T`` trees on one partition."""
    booster = lgb.Booster(model_str=model)
    X, y = valid[0], valid[1]
    raw = np.zeros(len(y))
    out = np.empty(booster.num_trees())
    for i in range(out.size):
        raw += booster.predict(X, start_iteration=i, num_iteration=1, raw_score=True)
        out[i] = logloss(y, sigmoid(raw)) * len(y)
    return out


def _predict_task(
    model: str, valid: tuple[F32, F32, F32 | None], best: int
) -> tuple[np.ndarray, F32, F32 | None]:
    booster = lgb.Booster(model_str=model)
    return np.asarray(booster.predict(valid[0], num_iteration=best), dtype=np.float64), valid[1], valid[2]


def _merge_vocab(parts: list[fit_stats.VocabStats]) -> fit_stats.VocabStats:
    return fit_stats.VocabStats.merge(parts)


def _merge_means(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return fit_stats.merge_means(parts)


# -- client side ------------------------------------------------------------------------------
def _tree_reduce(client: Client, futures: list[Future], merge: Callable[[list[Any]], Any]) -> Any:
    while len(futures) > 1:
        futures = [
            client.submit(merge, futures[i : i + _FAN_IN], pure=False)
            for i in range(0, len(futures), _FAN_IN)
        ]
    return futures[0].result()


def best_iteration(losses: np.ndarray, rounds: int) -> int:
    """The iteration (1-based) LightGBM's early stopping keeps for these per-iteration losses:
    the first lowest one, the search stopped ``rounds`` iterations without a new low."""
    best, best_loss = 1, math.inf
    for i, loss in enumerate(losses, 1):
        if loss < best_loss:
            best, best_loss = i, float(loss)
        elif i - best >= rounds:
            break
    return best


def dask_params(cfg: GbdtStudentConfig) -> dict[str, Any]:
    """:func:`.train.lgb_params` for ``DaskLGBMRegressor``: the same values, the scikit-learn
    names; threads are the workers' (``lightgbm.dask`` sets them), no metric (no early stopping)."""
    p = lgb_params(cfg)
    rename = {"min_data_in_leaf": "min_child_samples", "feature_fraction": "colsample_bytree",
              "bagging_fraction": "subsample", "bagging_freq": "subsample_freq", "lambda_l2": "reg_lambda",
              "seed": "random_state"}  # fmt: skip
    drop = {"metric", "first_metric_only", "num_threads"}
    out = {rename.get(k, k): v for k, v in p.items() if k not in drop}
    return {**out, "n_estimators": cfg.num_boost_round, "tree_learner": "data"}


def train_gbdt_dask(
    client: Client,
    *,
    schema: Schema,
    data_dir: str | Path,
    soft_dir: str | Path | None,
    teacher_hash: str | None,
    cfg: GbdtStudentConfig,
    hard: bool,
    out_dir: str | Path,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the GBDT student on ``client``'s cluster from the split files; write ``out_dir`` as
    :func:`.train.train_gbdt` does and return the metrics (see the module docstring)."""
    d = cfg.distributed
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    job = _Job(schema, cfg, hard)
    train_path, valid_path = split_path(data_dir, "train"), split_path(data_dir, "valid")

    def soft(split: str, path: Path) -> SplitSoftLabels | None:
        if hard or soft_dir is None:
            return None
        return check_soft_labels(soft_dir, split, count_rows(path), expected_teacher_hash=teacher_hash)

    train = plan_partitions(
        train_path, "train", d.partition_rows, soft("train", train_path), at_least=n_workers
    )
    n_train = sum(len(p) for p in train)
    fitted = list(train)
    transfer_path = find_split(data_dir, "transfer")
    if not hard and cfg.use_transfer and transfer_path is not None and soft_dir is not None:
        from recdistill.students.soft_labels import has_soft_labels

        if has_soft_labels(soft_dir, "transfer"):
            fitted += plan_partitions(transfer_path, "transfer", d.partition_rows, soft("transfer", transfer_path),
                                      offset=n_train)  # fmt: skip
        else:
            print(f"note: {transfer_path} has no soft labels in {soft_dir}; training without transfer rows")
    valid = plan_partitions(
        valid_path, "valid", d.partition_rows, soft("valid", valid_path), at_least=n_workers
    )

    t0 = time.perf_counter()
    vocab = _tree_reduce(client, client.map(_vocab_task, fitted, job=job, pure=False), _merge_vocab)
    targets = ["click"] if hard or soft_dir is None else ["click", "teacher"]
    plan = fit_stats.plan_encoders(schema, vocab, cfg, targets)
    plan_f = client.scatter(plan, broadcast=True)
    means = _tree_reduce(
        client, client.map(_means_task, fitted, job=job, plan=plan_f, pure=False), _merge_means
    )
    fit = fit_stats.finish_encoders(plan, means, cfg)
    featurizer = GbdtFeaturizer(schema, fit.dense, fit.categorical, fit.multi)
    feat_f, fit_f = client.scatter(featurizer, broadcast=True), client.scatter(fit, broadcast=True)
    parts = client.map(_train_task, fitted, job=job, featurizer=feat_f, fit=fit_f, pure=False)
    valid_parts = client.map(_valid_task, valid, job=job, featurizer=feat_f, pure=False)
    X, y = _dask_arrays(client, parts, [len(p) for p in fitted], featurizer.n_features)
    featurize_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = lgb.DaskLGBMRegressor(client=client, **dask_params(cfg))
    with warnings.catch_warnings():  # its own n_jobs default, replaced by the workers' threads
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        model.fit(
            X,
            y,
            feature_name=lgb_feature_names(featurizer.feature_names),
            categorical_feature=featurizer.categorical_features,
        )
    booster = model.booster_
    train_s = time.perf_counter() - t0
    del parts, X, y  # release the training matrices on the workers

    t0 = time.perf_counter()
    model_f = client.scatter(booster.model_to_string(), broadcast=True)
    curves = client.gather(client.map(_curve_task, [model_f] * len(valid_parts), valid_parts, pure=False))
    best = best_iteration(np.sum(curves, axis=0), cfg.early_stopping_rounds)
    preds = client.gather(
        client.map(_predict_task, [model_f] * len(valid_parts), valid_parts, best=best, pure=False)
    )
    p_valid = np.concatenate([p for p, _, _ in preds])
    y_valid = np.concatenate([v for _, v, _ in preds])
    teacher_valid = (
        None if preds[0][2] is None else np.concatenate([t for _, _, t in preds]).astype(np.float32)
    )
    choose_s = time.perf_counter() - t0

    metrics = student_metrics(
        cfg,
        hard,
        featurizer,
        booster,
        best,
        rows={
            "train_rows": n_train,
            "transfer_rows": sum(len(p) for p in fitted) - n_train,
            "valid_rows": len(y_valid),
        },
        y_valid=y_valid,
        p_valid=p_valid,
        valid_teacher_probs=teacher_valid,
        seconds={
            "featurize_seconds": featurize_s,
            "train_seconds": train_s,
            "choose_iteration_seconds": choose_s,
        },
    )
    metrics["engine"] = {
        "name": "dask",
        "scheduler": d.scheduler,
        "workers": n_workers,
        "partitions": {"fitted": len(fitted), "valid": len(valid)},
        "trees_grown": booster.num_trees(),
        "iteration_rule": f"lowest validation log loss, stopped {cfg.early_stopping_rounds} rounds after it",
    }
    metrics.update(extra or {})
    return save_student(out_dir, booster, best, featurizer, metrics)


def _dask_arrays(
    client: Client, parts: Sequence[Future], rows: Sequence[int], n_features: int
) -> tuple[Any, Any]:
    """Dask arrays ``X [N, F]`` and ``y [N]`` over the partitions' (X, label) futures, computed once."""
    import dask
    import dask.array as da

    xs = [client.submit(operator.getitem, f, 0, pure=False) for f in parts]
    ys = [client.submit(operator.getitem, f, 1, pure=False) for f in parts]
    X = da.concatenate([da.from_delayed(dask.delayed(x), shape=(n, n_features), dtype=np.float32)
                        for x, n in zip(xs, rows, strict=True)])  # fmt: skip
    y = da.concatenate(
        [
            da.from_delayed(dask.delayed(v), shape=(n,), dtype=np.float32)
            for v, n in zip(ys, rows, strict=True)
        ]
    )
    return X, y
