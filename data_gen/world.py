"""The static world: users, items, categories and contexts, drawn once from the seed.

Shapes (``U`` users, ``I`` items, ``C`` categories, ``K`` contexts, ``A`` age buckets,
``d`` latent dimension, ``F`` = :data:`MAX_FAVOURITES`):

  items      ``item_cat [I]``, ``item_pop [I]`` (probabilities), ``item_latent [I, d]``,
             ``item_bias [I]``, ``item_price [I]``, ``item_quality [I]``,
             ``item_ctr_7d [I]`` (NaN when never shown), ``item_ctr_7d_clicks [I]``,
             ``item_impr_7d [I]``
  categories ``cat_latent [C, d]``, ``cat_bias [C]``, ``cat_log_price [C]``, ``cat_cross [C, r]``
  users      ``user_pop [U]``, ``user_age [U]``, ``user_rate [U]`` (sessions per 30 days),
             ``user_fav [U, F]`` (-1 padded), ``user_n_fav [U]``, ``user_latent [U, d]``,
             ``user_bias [U]``
  ages       ``age_taste [A, d]``, ``age_bias [A]``, ``age_price_shift [A]``
  contexts   ``ctx_cdf [K]``, ``ctx_bias [K]``, ``ctx_cross [K, r]`` (mostly the surface's)

Popularity everywhere is Zipf–Mandelbrot: weight ``(rank + offset) ** -exponent`` over a random
permutation of ranks, so an id says nothing about its popularity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recdistill.config import GeneratorConfig

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

WORLD_STREAM = 0x5EED  # rng stream tag of the world tables
MAX_FAVOURITES = 6
CROSS_RANK = 3  # rank of the context x category cross
N_SURFACES = 4  # context_id % N_SURFACES is the surface
CATEGORIES_PER_GENRE = 16
IMPRESSIONS_7D = 2e6  # impressions behind the item_ctr_7d / item_impr_7d counters


@dataclass(frozen=True)
class World:
    """Static tables of one generated world (see module docstring for shapes)."""

    item_cat: I64
    item_pop: F64
    item_cdf: F64
    item_latent: F64
    item_bias: F64
    item_price: F64
    item_quality: F64
    item_ctr_7d: F64
    item_ctr_7d_clicks: F64
    item_impr_7d: F64
    # items sorted by category, with a global popularity CDF, for "item of category c" draws
    cat_items: I64
    cat_items_cdf: F64
    cat_lo: F64
    cat_mass: F64
    cat_start: I64
    cat_stop: I64
    cat_pop: F64
    cat_cdf: F64
    cat_latent: F64
    cat_bias: F64
    cat_log_price: F64
    cat_cross: F64
    user_pop: F64
    user_cdf: F64
    user_age: I64
    user_rate: F64
    user_fav: I64
    user_n_fav: I64
    user_latent: F64
    user_bias: F64
    age_bias: F64
    age_price_shift: F64
    ctx_cdf: F64
    ctx_bias: F64
    ctx_cross: F64

    @property
    def n_items(self) -> int:
        return int(self.item_cat.shape[0])

    def sample_items(self, rng: np.random.Generator, size: tuple[int, ...]) -> I64:
        """Items by global popularity, shape ``size``."""
        idx = np.searchsorted(self.item_cdf, rng.random(size), side="right")
        return np.minimum(idx, self.n_items - 1).astype(np.int64)

    def sample_items_in(self, rng: np.random.Generator, cats: I64) -> I64:
        """One item per entry of ``cats`` (any shape), drawn by popularity within its category."""
        x = self.cat_lo[cats] + rng.random(cats.shape) * self.cat_mass[cats]
        pos = np.searchsorted(self.cat_items_cdf, x, side="right")
        pos = np.clip(pos, self.cat_start[cats], self.cat_stop[cats] - 1)
        return self.cat_items[pos]


def zipf_weights(n: int, exponent: float, offset: float, rng: np.random.Generator) -> F64:
    """Probabilities ``[n]`` proportional to ``(rank + offset) ** -exponent``, ranks randomly permuted."""
    w = (np.arange(1, n + 1, dtype=np.float64) + offset) ** -exponent
    w = w[rng.permutation(n)]
    return np.asarray(w / w.sum(), dtype=np.float64)


def _cdf(p: F64) -> F64:
    c = np.cumsum(p)
    c[-1] = 1.0
    return np.asarray(c, dtype=np.float64)


def _normal(rng: np.random.Generator, scale: float, size: tuple[int, ...]) -> F64:
    return np.asarray(rng.normal(0.0, scale, size), dtype=np.float64)


def build_world(cfg: GeneratorConfig) -> World:
    """Draw every static table from ``cfg.seed`` (independent of rows and chunking)."""
    rng = np.random.default_rng([cfg.seed, WORLD_STREAM])
    d, C, n_items, U, K, A = (
        cfg.latent_dim, cfg.n_categories, cfg.n_items, cfg.n_users, cfg.n_contexts, cfg.n_age_buckets,
    )  # fmt: skip
    s, q = cfg.zipf_exponent, cfg.zipf_offset
    unit = 1.0 / np.sqrt(d)  # latent vectors of norm ~1

    # a two-level taxonomy: categories belong to genres, which carry most of the taste geometry
    G = max(1, C // CATEGORIES_PER_GENRE)
    genre = rng.integers(0, G, C)
    genre_latent = _normal(rng, unit, (G, d))
    genre_cross = _normal(rng, 1.0 / np.sqrt(CROSS_RANK), (G, CROSS_RANK))
    # categories: popularity, taste direction, base appeal, typical price, cross factors
    cat_pop = zipf_weights(C, s, q, rng)
    cat_latent = genre_latent[genre] + _normal(rng, 0.4 * unit, (C, d))
    cat_bias = _normal(rng, 0.3, (C,))
    cat_log_price = rng.normal(3.0, 0.8, C)
    cat_cross = genre_cross[genre] + _normal(rng, 0.4 / np.sqrt(CROSS_RANK), (C, CROSS_RANK))

    # items: every category gets one item, the rest follow category popularity
    item_cat = np.concatenate([rng.permutation(C), rng.choice(C, size=n_items - C, p=cat_pop)]).astype(
        np.int64
    )
    item_cat = item_cat[rng.permutation(n_items)]
    item_pop = zipf_weights(n_items, s, q, rng)
    item_latent = cat_latent[item_cat] + _normal(rng, 0.25 * unit, (n_items, d))
    item_quality = rng.normal(0.0, 1.0, n_items)
    item_bias = cat_bias[item_cat] + _normal(rng, 0.2, (n_items,))
    item_price = np.round(np.exp(cat_log_price[item_cat] + rng.normal(0.0, 0.5, n_items)), 2)
    # 7-day counters from a larger production log: a noisy view of appeal and quality
    impr = rng.poisson(IMPRESSIONS_7D * item_pop).astype(np.float64)
    hist_p = 1.0 / (
        1.0 + np.exp(-(np.log(cfg.base_ctr / (1 - cfg.base_ctr)) + item_bias + 0.3 * item_quality))
    )
    clicks = rng.binomial(impr.astype(np.int64), hist_p).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ctr_7d = np.where(impr > 0, clicks / np.maximum(impr, 1.0), np.nan)

    order = np.argsort(item_cat, kind="stable")
    sorted_cat = item_cat[order]
    cat_start = np.searchsorted(sorted_cat, np.arange(C), side="left").astype(np.int64)
    cat_stop = np.searchsorted(sorted_cat, np.arange(C), side="right").astype(np.int64)
    cat_items_cdf = _cdf(item_pop[order])
    cat_lo = np.concatenate([[0.0], cat_items_cdf])[cat_start]
    cat_mass = cat_items_cdf[cat_stop - 1] - cat_lo

    # age buckets: taste direction, click propensity, preferred price level within a category
    age_p = rng.dirichlet(np.full(A, 5.0))
    age_taste = _normal(rng, 0.6 * unit, (A, d))
    age_bias = _normal(rng, 0.25, (A,))
    age_price_shift = _normal(rng, 0.5, (A,))

    # users: activity (= request frequency), age, 2..6 favourite categories tilted by age taste
    user_pop = zipf_weights(U, s, q, rng)
    user_rate = 3.0 * (user_pop / np.median(user_pop)) ** 0.7
    user_age = rng.choice(A, size=U, p=age_p).astype(np.int64)
    n_fav = np.minimum(2 + rng.poisson(1.5, U), min(MAX_FAVOURITES, C)).astype(np.int64)
    # 1-2 favourite genres per user; favourite categories mostly inside them
    fav_genre = rng.integers(0, G, (U, 2))
    fav_genre[rng.random(U) < 0.5, 1] = -1
    in_fav_genre = (genre[None, :] == fav_genre[:, :1]) | (genre[None, :] == fav_genre[:, 1:])  # [U, C]
    tilt = np.log(cat_pop)[None, :] + 2.0 * (age_taste @ cat_latent.T)[user_age] + 3.0 * in_fav_genre
    gumbel = tilt + rng.gumbel(size=(U, C))
    top = np.argsort(-gumbel, axis=1)[:, : min(MAX_FAVOURITES, C)]
    fav = np.full((U, MAX_FAVOURITES), -1, dtype=np.int64)
    keep = np.arange(top.shape[1])[None, :] < n_fav[:, None]
    fav[:, : top.shape[1]] = np.where(keep, top, -1)
    fav_mean = np.where(keep[..., None], cat_latent[top], 0.0).sum(1) / n_fav[:, None]
    user_latent = age_taste[user_age] + fav_mean + _normal(rng, 0.2 * unit, (U, d))
    user_bias = _normal(rng, 0.15, (U,))

    # contexts: id = hour * N_SURFACES + surface; the surface (feed, search, ...) shapes which
    # categories get clicked, the hour adds a little
    ctx_pop = zipf_weights(K, s, q, rng)
    surface = np.arange(K) % min(N_SURFACES, K)
    ctx_bias = _normal(rng, 0.2, (N_SURFACES,))[surface] + _normal(rng, 0.1, (K,))
    surface_cross = _normal(rng, 1.0 / np.sqrt(CROSS_RANK), (N_SURFACES, CROSS_RANK))
    ctx_cross = surface_cross[surface] + _normal(rng, 0.15 / np.sqrt(CROSS_RANK), (K, CROSS_RANK))

    return World(
        item_cat=item_cat, item_pop=item_pop, item_cdf=_cdf(item_pop), item_latent=item_latent,
        item_bias=item_bias, item_price=item_price, item_quality=item_quality,
        item_ctr_7d=ctr_7d, item_ctr_7d_clicks=clicks, item_impr_7d=impr,
        cat_items=order.astype(np.int64), cat_items_cdf=cat_items_cdf, cat_lo=cat_lo, cat_mass=cat_mass,
        cat_start=cat_start, cat_stop=cat_stop, cat_pop=cat_pop, cat_cdf=_cdf(cat_pop), cat_latent=cat_latent,
        cat_bias=cat_bias, cat_log_price=cat_log_price, cat_cross=cat_cross,
        user_pop=user_pop, user_cdf=_cdf(user_pop), user_age=user_age, user_rate=user_rate,
        user_fav=fav, user_n_fav=n_fav, user_latent=user_latent, user_bias=user_bias,
        age_bias=age_bias, age_price_shift=age_price_shift,
        ctx_cdf=_cdf(ctx_pop), ctx_bias=ctx_bias, ctx_cross=ctx_cross,
    )  # fmt: skip
