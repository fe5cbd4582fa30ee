"""Students: training the embedding-MLP student on teacher soft labels, and the checks around them.

  * :mod:`~recdistill.students.soft_labels`: ``load_soft_labels`` reads ``soft_labels/<split>.parquet``
    and refuses labels that do not match the data or the expected teacher.
  * :mod:`~recdistill.students.train_mlp`: ``train_mlp`` (Adam, early stopping on validation AUC,
    atomic checkpoint ``students/<name>/{model.pt,config.json,metrics.json}``).

:func:`preprocess_fingerprint` lives here (numpy only, no torch) because training, ONNX export
and the serving predictor all use it to prove they share one preprocessing artefact.
"""

from __future__ import annotations

import hashlib
import json

from recdistill.data.preprocess import Preprocessor


def preprocess_fingerprint(pre: Preprocessor) -> str:
    """sha256 of everything :meth:`Preprocessor.transform` depends on (schema, stats, vocabularies).

    Equal for a fitted preprocessor and the same one after ``save``/``load``; different as soon
    as one vocabulary id, hash size or dense statistic differs.
    """
    h = hashlib.sha256()
    meta = {
        "schema": pre.schema.to_dict(),
        "dense_stats": {k: vars(v) for k, v in sorted(pre.dense_stats.items())},
        "hash_buckets": dict(sorted(pre.hash_buckets.items())),
        "vocab_sizes": {k: int(v.shape[0]) for k, v in sorted(pre.vocabs.items())},
    }
    h.update(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(pre.vocabs):
        h.update(name.encode())
        h.update(pre.vocabs[name].astype("<i8", copy=False).tobytes())
    return h.hexdigest()
