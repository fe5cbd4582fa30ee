"""Evaluation of a run's models: every exported version folder, loaded in process through the
predictor registry (the code a server runs), scored on the test split.

  * :mod:`~recdistill.evaluate.candidates`: ``evaluate_candidates`` (quality, fidelity to the
    teacher, sizes, in-process latency of any set of predictors) and the ``evaluation.md`` table
  * :mod:`~recdistill.evaluate.version_folders`: ``evaluate_versions`` (exported version folders)

Training-time validation (early stopping) uses :mod:`recdistill.metrics` directly.
"""
