"""Synthetic click logs with known ground truth.

``generate(cfg, out_dir)`` writes ``train/valid/test.parquet`` (plus ``transfer.parquet``, unlabelled,
when ``cfg.transfer_rows > 0``) and ``schema.json``, one row per candidate, and returns a summary
with the Bayes-optimal AUC on the test split (the AUC of the stored ``true_ctr``).

Generative process
==================

The world (drawn once from the seed; ``world.py``)
  * Popularity of users, items, categories and contexts is Zipf–Mandelbrot,
    ``(rank + zipf_offset) ** -zipf_exponent`` over randomly permuted ids.
  * A two-level taxonomy: categories belong to genres (16 categories per genre). A category's
    latent direction ``a_c`` = its genre's (norm ~1) + N(0, 0.4²/d); likewise its rank-3 factor
    for the context x category cross. Categories also have an appeal ``b_c`` ~ N(0, 0.3²) and
    a typical log price.
  * Items belong to a category (more items in popular categories). Item latent
    ``v_i = a_c + N(0, 0.25²/d)``; item appeal ``b_i = b_c + N(0, 0.2²)``; price ~ lognormal
    around the category's level; a static quality ``q_i`` ~ N(0, 1). 7-day counters from a larger
    production log: ``item_impr_7d`` ~ Poisson(2e6 x popularity) and ``item_ctr_7d`` = clicks /
    impressions, clicks drawn from the item's appeal and quality (NaN when never shown).
  * Age buckets have a taste direction, a click propensity and a preferred price level
    (relative to each category's typical price).
  * Users have an age bucket, an activity rate (heavier users also make more requests), 1-2
    favourite genres, 2-6 favourite categories (popular ones, mostly inside those genres, tilted
    towards the age bucket's taste) and a latent
    ``u = taste(age) + mean(a_c over favourites) + N(0, 0.2²/d)``; a small own bias N(0, 0.15²).
  * Contexts: ``context_id = hour * 4 + surface``; the surface (think feed, search, ...) sets the
    context's cross factor and most of its bias, the hour adds a little.

A request (``sampler.py``): user by popularity, context by popularity, then
  * ``user_activity``: sessions in the last 30 days ~ Poisson(user's rate);
  * ``user_hist``: up to ``history_len`` recent items (more for active users), 70% from a
    favourite category, the rest globally popular; ``user_hist_cat``: their categories;
  * ``user_long_hist``: up to ``long_history_len`` long-term category ids, 75% favourites;
  * ``N = candidates_per_request`` distinct candidate items, 35% retrieved from the user's
    favourite categories, the rest globally popular;
  * ``item_quality``: the request-time quality score, ``q_i`` + N(0, 0.7²) (freshness, stock);
  * ``position``: the logging ranker, an older model that sees the smoothed 7-day CTR and the
    history matches, orders the candidates with noise N(0, 0.5²); position 0 is the top.

The true click logit of a candidate is the sum of
  * base (calibrated so that the mean true CTR is ``base_ctr``);
  * user: age bucket + own bias + 0.3·log1p(activity) − 0.06·log1p(activity)² (peaks ~11);
  * item appeal ``b_i``;
  * interaction ``0.8·<u, v_i>``;
  * context bias + context x category cross ``0.5·<f_context, g_category>``;
  * price: ``−0.4·(log price − category level − age-bucket shift)²``;
  * recent history: ``0.35·log1p(#recent items of the candidate's category) + 0.3·[item seen]``;
  * long-term history (privileged): ``0.35·log1p(#long-term entries equal to its category)``;
  * quality (privileged): ``0.6·tanh(item_quality)``;
  * position bias: ``−0.3·log1p(position)``.

``true_ctr = sigmoid(logit)`` is stored, and ``click ~ Bernoulli(true_ctr)``. What no model can
know: the user's and item's own noise terms for ids seen rarely, and the Bernoulli draw. Logistic
regression on the same features misses the interaction, cross, price and history-match terms;
a network with embeddings can learn them. With ``cfg.privileged`` the long-term history and the
request-time quality are ``teacher_only``; otherwise the same data is written and nothing is
``teacher_only``. Splits are by request (``cfg.split``); ``transfer.parquet`` holds further
requests of the same process with null clicks.

Determinism and memory: the world comes from ``[seed, world tag]``, each block of
``16,384 // N`` requests from ``default_rng([seed, stream, block])``, so files are identical for
a seed, do not depend on ``chunk_rows`` (only the row-group size and the memory bound), and a
smaller data set is a prefix of a larger one. Rows are buffered per file up to ``chunk_rows``.
"""

from data_gen.generator import generate

__all__ = ["generate"]
