"""The :class:`~recdistill.data.schema.Schema` of the generated click logs.

With ``cfg.privileged`` the long-term category history and the request-time item quality are
``teacher_only`` (privileged-features scenario); without it the same columns exist and nothing
is ``teacher_only`` (same-features scenario).
"""

from __future__ import annotations

from recdistill.config import GeneratorConfig
from recdistill.data.schema import FeatureSpec, Schema

LABEL = "click"
ROW_KEY = "row_id"
REQUEST_ID = "request_id"
USER_ID = "user_id"
TRUE_CTR = "true_ctr"
PRIVILEGED_FEATURES = ("user_long_hist", "item_quality")


def build_schema(cfg: GeneratorConfig) -> Schema:
    """Schema of the files :func:`data_gen.generate` writes for ``cfg`` (features in column order)."""
    priv = cfg.privileged
    features = (
        FeatureSpec("user_id", "categorical", "user", min_count=2, max_id=cfg.n_users - 1),
        FeatureSpec("user_age_bucket", "categorical", "user", max_id=cfg.n_age_buckets - 1),
        FeatureSpec("user_activity", "dense", "user", transform="log1p"),
        FeatureSpec("user_hist", "multi", "user", max_len=cfg.history_len, vocab_from="item_id",
                    max_id=cfg.n_items - 1),
        FeatureSpec("user_hist_cat", "multi", "user", max_len=cfg.history_len, vocab_from="item_category",
                    max_id=cfg.n_categories - 1),
        FeatureSpec("user_long_hist", "multi", "user", max_len=cfg.long_history_len,
                    vocab_from="item_category", max_id=cfg.n_categories - 1, teacher_only=priv),
        FeatureSpec("item_id", "categorical", "item", min_count=2, max_id=cfg.n_items - 1),
        FeatureSpec("item_category", "categorical", "item", max_id=cfg.n_categories - 1),
        FeatureSpec("item_price", "dense", "item", transform="log1p"),
        FeatureSpec("item_ctr_7d", "dense", "item"),
        FeatureSpec("item_impr_7d", "dense", "item", transform="log1p"),
        FeatureSpec("item_quality", "dense", "item", teacher_only=priv),
        FeatureSpec("context_id", "categorical", "context", max_id=cfg.n_contexts - 1),
        FeatureSpec("position", "categorical", "context", max_id=cfg.candidates_per_request - 1),
    )  # fmt: skip
    return Schema(
        label=LABEL,
        features=features,
        row_key=ROW_KEY,
        request_id=REQUEST_ID,
        user_id=USER_ID,
        true_ctr=TRUE_CTR,
        source="data_gen",
    )
