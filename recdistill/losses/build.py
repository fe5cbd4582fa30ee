"""Turn a :class:`~recdistill.config.distill.DistillLossConfig` into a printable objective."""

from __future__ import annotations

from recdistill.config.distill import DistillLossConfig
from recdistill.losses.base import Loss
from recdistill.losses.hard import HardBCE
from recdistill.losses.listwise import ListwiseKD
from recdistill.losses.logit_mse import LogitMSE
from recdistill.losses.weighted import WeightedSum, kd_loss


def build_loss(cfg: DistillLossConfig) -> WeightedSum:
    """The objective a config describes; terms with weight 0 are left out.

    * ``kind="hard"``: ``Loss = 1 * hard_bce`` (the baseline twin: labels only, no teacher).
    * ``kind="kd"``: ``alpha * hard_bce + (1 - alpha) * soft_bce(T)``, then
      ``+ logit_mse * logit_mse`` and ``+ listwise * listwise_kd(T=listwise_temperature)``.

    Example: ``DistillLossConfig(alpha=0.5, temperature=2, logit_mse=0, listwise=0.1)`` gives
    ``Loss = 0.5 * hard_bce + 0.5 * soft_bce(T=2) + 0.1 * listwise_kd(T=1)``.
    """
    if cfg.kind == "hard":
        return WeightedSum([(1.0, HardBCE())])
    terms: list[tuple[float, Loss]] = list(kd_loss(cfg.alpha, cfg.temperature).terms)
    if cfg.logit_mse > 0.0:
        terms.append((cfg.logit_mse, LogitMSE()))
    if cfg.listwise > 0.0:
        terms.append((cfg.listwise, ListwiseKD(cfg.listwise_temperature)))
    return WeightedSum(terms)
