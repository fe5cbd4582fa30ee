"""Requests, candidates, features, the true click logit and labels, one block of requests at a time.

A block is ``R`` requests x ``N`` candidates = ``B`` rows, drawn from one numpy Generator seeded
``[seed, stream, block_index]``, so a block's content depends only on the seed, the stream
(labelled, transfer, calibration) and its index: never on how blocks are grouped into chunks.
The effect sizes below are the generative process documented in :mod:`data_gen`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from data_gen.world import F64, I64, World
from recdistill.config import GeneratorConfig

BLOCK_ROWS = 16_384  # rows per rng block (whole requests)

# -- behaviour of users and the retrieval/logging system ----------------------------------------
P_HIST_FAV = 0.7  # recent items from a favourite category (else globally popular)
P_LONG_FAV = 0.75  # long-term categories from a favourite (else by category popularity)
P_CAND_FAV = 0.35  # candidates retrieved from a favourite category (else globally popular)
QUALITY_NOISE = 0.7  # request-time quality fluctuation (freshness, stock) around the item's own
POLICY_NOISE = 0.5  # noise of the logging ranker that decides positions

# -- effects on the click logit ---------------------------------------------------------------
W_INTER = 0.8  # <user latent, item latent>
W_CROSS = 0.5  # context x category cross
W_PRICE = 0.4  # squared distance of log price from the age bucket's preferred level
W_ACT = (0.3, -0.06)  # activity: a*log1p(x) + b*log1p(x)^2 (peaks near 11 sessions)
W_RECENT = 0.35  # log1p(#recent items of the candidate's category)
W_REPEAT = 0.3  # candidate item itself in recent history
W_LONG = 0.35  # log1p(#long-term categories equal to the candidate's) — privileged
W_QUALITY = 0.6  # tanh(observed quality) — privileged
W_POS = 0.3  # -log1p(position)


@dataclass(frozen=True)
class Block:
    """One block: request-level (``[R]``, ``[R, H]``, ``[R, L]``) and row-level (``[B]``) arrays.

    Rows are request-major: row ``r * N + k`` is candidate ``k`` of request ``r``.
    ``z`` is the true logit without the base term; ``hist``/``long_hist`` are -1 padded.
    """

    request_id: I64  # [R]
    split_u: F64  # [R] uniform draw that assigns the request to a split
    user: I64  # [R]
    age: I64  # [R]
    context: I64  # [R]
    activity: F64  # [R]
    hist: I64  # [R, H] recent item ids
    hist_cat: I64  # [R, H] their categories
    hist_len: I64  # [R]
    long_hist: I64  # [R, L] long-term category ids
    long_len: I64  # [R]
    item: I64  # [B]
    category: I64  # [B]
    price: F64  # [B]
    ctr_7d: F64  # [B]
    impr_7d: F64  # [B]
    quality: F64  # [B] observed (request-time) quality
    position: I64  # [B]
    z: F64  # [B]
    parts: dict[str, F64]  # named logit components [B] (for diagnostics)

    @property
    def n_requests(self) -> int:
        return int(self.request_id.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.item.shape[0])


def block_requests(cfg: GeneratorConfig) -> int:
    return max(1, BLOCK_ROWS // cfg.candidates_per_request)


def _fav_categories(world: World, rng: np.random.Generator, users: I64, cols: int) -> I64:
    """``[R, cols]`` categories, each a uniformly chosen favourite of the request's user."""
    n_fav = world.user_n_fav[users][:, None]
    idx = np.minimum((rng.random((users.shape[0], cols)) * n_fav).astype(np.int64), n_fav - 1)
    return np.take_along_axis(world.user_fav[users], idx, axis=1)


def _lengths(rng: np.random.Generator, mean: F64, cap: int) -> I64:
    return np.minimum(rng.poisson(mean), cap).astype(np.int64)


def _distinct_candidates(world: World, rng: np.random.Generator, users: I64, n: int) -> I64:
    """``[R, n]`` distinct items per request: retrieval from favourites mixed with popular items."""
    R, M = users.shape[0], 2 * n
    from_fav = rng.random((R, M)) < P_CAND_FAV
    draws = np.where(
        from_fav,
        world.sample_items_in(rng, _fav_categories(world, rng, users, M)),
        world.sample_items(rng, (R, M)),
    )
    draws.sort(axis=1)
    dup = np.zeros((R, M), dtype=bool)
    dup[:, 1:] = draws[:, 1:] == draws[:, :-1]
    keys = np.where(dup, 2.0, rng.random((R, M)))  # random order among distinct draws, duplicates last
    pick = np.argsort(keys, axis=1, kind="stable")[:, :n]
    cand = np.take_along_axis(draws, pick, axis=1)
    short = np.flatnonzero((M - dup.sum(axis=1)) < n)
    for r in short:  # rare: too few distinct draws; top up with uniformly chosen unseen items
        have = np.unique(draws[r])
        pool = np.setdiff1d(np.arange(world.n_items), have, assume_unique=True)
        cand[r] = np.concatenate([have, rng.choice(pool, size=n - have.shape[0], replace=False)])
    return cand


def _count_matches(values: I64, table: I64) -> I64:
    """``values [R, N]`` vs ``table [R, T]`` (-1 padded): matches per value, ``[R, N]``."""
    return (values[:, :, None] == table[:, None, :]).sum(axis=2, dtype=np.int64)


def sample_block(
    world: World, cfg: GeneratorConfig, rng: np.random.Generator, first_request: int, n_requests: int
) -> Block:
    """Draw ``n_requests`` requests (ids ``first_request..``) and the true logit of every candidate."""
    R, N, H, L = n_requests, cfg.candidates_per_request, cfg.history_len, cfg.long_history_len
    request_id = np.arange(first_request, first_request + R, dtype=np.int64)
    split_u = rng.random(R)
    users = np.minimum(np.searchsorted(world.user_cdf, rng.random(R), side="right"), len(world.user_cdf) - 1)
    context = np.minimum(np.searchsorted(world.ctx_cdf, rng.random(R), side="right"), len(world.ctx_cdf) - 1)
    age = world.user_age[users]
    activity = rng.poisson(world.user_rate[users]).astype(np.float64)

    # recent items (short-term interest) and long-term categories; -1 pads the tail
    hist_len = _lengths(rng, 2.0 + 2.0 * activity, H)
    hist = np.where(
        rng.random((R, H)) < P_HIST_FAV,
        world.sample_items_in(rng, _fav_categories(world, rng, users, H)),
        world.sample_items(rng, (R, H)),
    )
    hist = np.where(np.arange(H)[None, :] < hist_len[:, None], hist, -1)
    long_len = _lengths(rng, 5.0 + 5.0 * activity, L)
    bg = np.minimum(np.searchsorted(world.cat_cdf, rng.random((R, L)), side="right"), len(world.cat_cdf) - 1)
    long_hist = np.where(rng.random((R, L)) < P_LONG_FAV, _fav_categories(world, rng, users, L), bg)
    long_hist = np.where(np.arange(L)[None, :] < long_len[:, None], long_hist, -1)

    cand = _distinct_candidates(world, rng, users, N)  # [R, N]
    cand_cat = world.item_cat[cand]
    hist_cat = np.where(hist >= 0, world.item_cat[np.maximum(hist, 0)], -1)
    n_recent = _count_matches(cand_cat, hist_cat).ravel()
    repeat = _count_matches(cand, hist).ravel() > 0
    n_long = _count_matches(cand_cat, long_hist).ravel()

    row_req = np.repeat(np.arange(R), N)
    item, cat = cand.ravel(), cand_cat.ravel()
    u, a, k = users[row_req], age[row_req], context[row_req]
    price = world.item_price[item]
    quality = world.item_quality[item] + rng.normal(0.0, QUALITY_NOISE, R * N)
    log_act = np.log1p(activity)[row_req]
    parts = {
        "user": world.age_bias[a] + world.user_bias[u] + W_ACT[0] * log_act + W_ACT[1] * log_act**2,
        "item": world.item_bias[item],
        "interaction": W_INTER * np.einsum("bd,bd->b", world.user_latent[u], world.item_latent[item]),
        "context_x_category": world.ctx_bias[k]
        + W_CROSS * np.einsum("br,br->b", world.ctx_cross[k], world.cat_cross[cat]),
        "price": -W_PRICE * (np.log(price) - world.cat_log_price[cat] - world.age_price_shift[a]) ** 2,
        "recent_history": W_RECENT * np.log1p(n_recent) + W_REPEAT * repeat,
        "long_history": W_LONG * np.log1p(n_long),
        "quality": W_QUALITY * np.tanh(quality),
    }
    z_wo_pos = np.sum(list(parts.values()), axis=0)
    # the logging ranker (an older production model) orders candidates by what it could see:
    # smoothed 7-day CTR, recent-history category match and long-term affinity, plus noise
    prior = 100.0  # pseudo-impressions of the CTR smoothing
    ctr_s = (world.item_ctr_7d_clicks[item] + prior * cfg.base_ctr) / (world.item_impr_7d[item] + prior)
    policy = (
        np.log(ctr_s / (1.0 - ctr_s))
        + 0.5 * np.log1p(n_recent)
        + 0.3 * np.log1p(n_long)
        + rng.normal(0.0, POLICY_NOISE, R * N)
    ).reshape(R, N)
    order = np.argsort(-policy, axis=1, kind="stable")
    position = np.empty((R, N), dtype=np.int64)
    np.put_along_axis(position, order, np.broadcast_to(np.arange(N), (R, N)), axis=1)
    position_flat = position.ravel()
    parts["position"] = -W_POS * np.log1p(position_flat)

    return Block(
        request_id=request_id, split_u=split_u, user=users.astype(np.int64), age=age,
        context=context.astype(np.int64), activity=activity, hist=hist, hist_cat=hist_cat, hist_len=hist_len,
        long_hist=long_hist, long_len=long_len, item=item, category=cat, price=price,
        ctr_7d=world.item_ctr_7d[item], impr_7d=world.item_impr_7d[item], quality=quality,
        position=position_flat, z=z_wo_pos + parts["position"], parts=parts,
    )  # fmt: skip


def draw_labels(
    block: Block, base_logit: float, rng: np.random.Generator
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]]:
    """True click probability ``[B]`` (float32) and a Bernoulli click ``[B]`` (int8) drawn from it."""
    p = 1.0 / (1.0 + np.exp(-(base_logit + block.z)))
    true_ctr = np.clip(p, 1e-7, 1.0 - 1e-7).astype(np.float32)
    click = (rng.random(p.shape[0]) < true_ctr).astype(np.int8)
    return true_ctr, click


def calibrate_base_logit(z: F64, target: float) -> float:
    """The base logit ``b`` with ``mean(sigmoid(b + z)) == target`` (bisection, 60 steps)."""
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.mean(1.0 / (1.0 + np.exp(-(mid + z)))) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
