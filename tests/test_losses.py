"""Golden values and properties of the distillation losses (recdistill/losses) and their config.

The golden values were computed by hand in float64 with Python's ``math`` (independent of torch):
``BCE(sigmoid(x), y) = softplus(x) - y * x`` and ``softplus(x) = log(1 + e^x)``.

Tiny batch used throughout: 6 rows, 2 requests interleaved (not contiguous), 2 rows unlabelled::

    row          0     1     2     3     4     5
    student s   1.0  -1.0   0.5   2.0   0.0  -0.5
    teacher t   2.0   0.0  -1.0   1.0   0.5  -2.0
    label y     1     0     NaN   1     0     NaN
    request     7     3     7     3     7     3       -> request 7 = rows 0,2,4; request 3 = rows 1,3,5
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recdistill.config.distill import DistillLossConfig
from recdistill.config.loader import from_mapping
from recdistill.errors import ConfigError
from recdistill.losses import (
    DistillTargets,
    HardBCE,
    ListwiseKD,
    LogitMSE,
    Loss,
    SoftBCE,
    WeightedSum,
    build_loss,
    group_log_softmax,
    kd_loss,
)
from recdistill.losses.listwise import group_index

NAN = float("nan")
S = [1.0, -1.0, 0.5, 2.0, 0.0, -0.5]
T_ = [2.0, 0.0, -1.0, 1.0, 0.5, -2.0]
Y = [1.0, 0.0, NAN, 1.0, 0.0, NAN]
G = [7, 3, 7, 3, 7, 3]

# hard_bce: labelled rows 0, 1, 3, 4 only.
#   row 0: softplus(1) - 1*1  = 1.3132617 - 1 = 0.3132617
#   row 1: softplus(-1) - 0   = 0.3132617
#   row 3: softplus(2) - 1*2  = 2.1269280 - 2 = 0.1269280
#   row 4: softplus(0) - 0    = ln 2 = 0.6931472
#   mean over the 4 labelled rows = 1.4465986 / 4
HARD = 0.3616496416598409

# soft_bce(T=1): target p = sigmoid(t) = [0.8808, 0.5, 0.2689, 0.7311, 0.6225, 0.1192]
#   per row softplus(s) - p*s = [0.43246, 0.81326, 0.83961, 0.66481, 0.69315, 0.53368]
#   mean over all 6 rows (labels not read) = 3.9769691 / 6
SOFT_T1 = 0.6628281750146244
# soft_bce(T=2): p = sigmoid(t/2) = [0.7311, 0.5, 0.3775, 0.6225, 0.5622, 0.2689]
#   per row softplus(s/2) - p*s/2 = [0.60855, 0.72408, 0.73155, 0.69080, 0.69315, 0.64317]
#   mean = 0.6818838739703623; times T^2 = 4
SOFT_T2 = 4 * 0.6818838739703623  # = 2.7275354958814493

# logit_mse: (s - t)^2 = [1, 1, 2.25, 1, 0.25, 2.25], mean over 6 rows = 7.75 / 6
MSE = 7.75 / 6

# listwise_kd(T=1): KL(p || q) per request, p = softmax(t), q = softmax(s) over the request's rows
#   request 7 (rows 0,2,4): t = [2, -1, 0.5] -> p = [0.78560, 0.03911, 0.17529]
#                           s = [1, 0.5, 0]  -> q = [0.50648, 0.30720, 0.18632]
#                           KL = sum p*log(p/q) = 0.25353174
#   request 3 (rows 1,3,5): t = [0, 1, -2]   -> p = [0.25950, 0.70538, 0.03512]
#                           s = [-1, 2, -0.5] -> q = [0.04399, 0.88349, 0.07252]
#                           KL = 0.27629415
#   mean over 2 requests = 0.26491295
LISTWISE_T1 = 0.2649129467720951
# listwise_kd(T=2): same at logits / 2: KL = 0.10721011 (request 7), 0.10874831 (request 3);
#   mean = 0.10797921; times T^2 = 4
LISTWISE_T2 = 4 * 0.1079792113013417  # = 0.4319168452053668


def targets(
    labels: list[float] = Y,
    teacher: list[float] = T_,
    groups: list[int] = G,
    dtype: torch.dtype = torch.float64,
) -> DistillTargets:
    return DistillTargets(
        torch.tensor(labels, dtype=dtype),
        torch.tensor(teacher, dtype=dtype),
        torch.tensor(groups, dtype=torch.int64),
    )


def student(values: list[float] = S, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, requires_grad=True)


# ---- independent numpy reference (for random inputs) -------------------------------------------


def np_listwise(s: np.ndarray, t: np.ndarray, g: np.ndarray, T: float) -> float:
    kls = []
    for gid in np.unique(g):
        rows = g == gid
        if rows.sum() < 2:
            continue
        a, b = t[rows] / T, s[rows] / T
        log_p = a - a.max() - np.log(np.exp(a - a.max()).sum())
        log_q = b - b.max() - np.log(np.exp(b - b.max()).sum())
        kls.append(float((np.exp(log_p) * (log_p - log_q)).sum()))
    return T * T * float(np.mean(kls)) if kls else 0.0


def np_soft_bce(s: np.ndarray, t: np.ndarray, T: float) -> float:
    p = 1.0 / (1.0 + np.exp(-t / T))
    x = s / T
    return T * T * float(np.mean(np.logaddexp(0.0, x) - p * x))


# ---- golden values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        (HardBCE(), HARD),
        (SoftBCE(1.0), SOFT_T1),
        (SoftBCE(2.0), SOFT_T2),
        (LogitMSE(), MSE),
        (ListwiseKD(1.0), LISTWISE_T1),
        (ListwiseKD(2.0), LISTWISE_T2),
    ],
    ids=str,
)
def test_golden_values(loss: Loss, expected: float) -> None:
    value = loss(student(), targets())
    assert value.dim() == 0
    assert value.item() == pytest.approx(expected, rel=1e-12)
    # float32 agrees to float32 precision
    value32 = loss(student(dtype=torch.float32), targets(dtype=torch.float32))
    assert value32.dtype == torch.float32
    assert value32.item() == pytest.approx(expected, rel=1e-5)


def test_names_print_parameters() -> None:
    assert str(HardBCE()) == "hard_bce"
    assert str(SoftBCE(2.0)) == "soft_bce(T=2)"
    assert str(SoftBCE(0.5)) == "soft_bce(T=0.5)"
    assert str(LogitMSE()) == "logit_mse"
    assert str(ListwiseKD(1)) == "listwise_kd(T=1)"


# ---- hard BCE -----------------------------------------------------------------------------------


def test_hard_bce_ignores_unlabelled_rows() -> None:
    s = student()
    HardBCE()(s, targets()).backward()
    assert s.grad is not None
    assert s.grad[2].item() == 0.0 and s.grad[5].item() == 0.0  # unlabelled rows get no gradient
    assert torch.all(s.grad[[0, 1, 3, 4]] != 0)
    # changing the student's logits on unlabelled rows does not change the loss
    moved = [1.0, -1.0, 40.0, 2.0, 0.0, -40.0]
    assert HardBCE()(student(moved), targets()).item() == pytest.approx(HARD, rel=1e-12)
    # the mean is over labelled rows: appending unlabelled rows keeps the value
    more = targets(labels=[*Y, NAN, NAN], teacher=[*T_, 0.0, 0.0], groups=[*G, 9, 9])
    assert HardBCE()(student([*S, 5.0, -5.0]), more).item() == pytest.approx(HARD, rel=1e-12)


def test_hard_bce_with_no_labelled_row_is_zero_with_finite_gradient() -> None:
    s = student()
    value = HardBCE()(s, targets(labels=[NAN] * 6))
    assert value.item() == 0.0
    value.backward()
    assert s.grad is not None and torch.equal(s.grad, torch.zeros(6, dtype=torch.float64))


# ---- soft BCE -----------------------------------------------------------------------------------


def test_soft_bce_at_t1_is_bce_against_sigmoid_teacher() -> None:
    s, tg = student(), targets()
    expected = torch.nn.functional.binary_cross_entropy(torch.sigmoid(s), torch.sigmoid(tg.teacher_logits))
    assert SoftBCE(1.0)(s, tg).item() == pytest.approx(expected.item(), rel=1e-10)


@pytest.mark.parametrize("T", [0.5, 2.0, 4.0])
def test_temperature_scaling_is_t_squared(T: float) -> None:
    # loss(T)(s, t) == T^2 * loss(1)(s / T, t / T), for both tempered losses
    s = torch.tensor(S, dtype=torch.float64)
    scaled = targets(teacher=[x / T for x in T_])
    for tempered, plain in [(SoftBCE(T), SoftBCE(1.0)), (ListwiseKD(T), ListwiseKD(1.0))]:
        lhs = tempered(s, targets()).item()
        rhs = T * T * plain(s / T, scaled).item()
        assert lhs == pytest.approx(rhs, rel=1e-12), str(tempered)


def test_soft_bce_uses_all_rows_and_ignores_labels() -> None:
    a = SoftBCE(2.0)(student(), targets()).item()
    b = SoftBCE(2.0)(student(), targets(labels=[0.0] * 6)).item()
    assert a == b == pytest.approx(SOFT_T2, rel=1e-12)
    s = student()
    SoftBCE(2.0)(s, targets()).backward()
    assert s.grad is not None and torch.all(s.grad != 0)  # unlabelled rows 2 and 5 learn too


def test_soft_bce_matches_numpy_on_random_rows() -> None:
    rng = np.random.default_rng(0)
    s, t = rng.normal(0, 3, 50), rng.normal(0, 3, 50)
    tg = DistillTargets(torch.full((50,), NAN, dtype=torch.float64), torch.tensor(t), torch.zeros(50).long())
    assert SoftBCE(3.0)(torch.tensor(s), tg).item() == pytest.approx(np_soft_bce(s, t, 3.0), rel=1e-10)


# ---- listwise KD --------------------------------------------------------------------------------


def test_listwise_is_zero_under_per_request_shift_and_positive_otherwise() -> None:
    # student = teacher + a different constant per request: same ordering and spread -> KL = 0
    shift = {7: 3.0, 3: -11.0}
    shifted = [t + shift[g] for t, g in zip(T_, G, strict=True)]
    for T in (1.0, 2.0):
        assert ListwiseKD(T)(student(shifted), targets()).item() == pytest.approx(0.0, abs=1e-12)
        assert ListwiseKD(T)(student(), targets()).item() > 0.01
    # a shift that is not constant within a request is penalised
    shifted[0] += 0.5
    assert ListwiseKD(1.0)(student(shifted), targets()).item() > 1e-4


def test_listwise_is_independent_of_row_order() -> None:
    rng = np.random.default_rng(1)
    n = 40
    s, t = rng.normal(0, 2, n), rng.normal(0, 2, n)
    g = rng.integers(0, 6, n).astype(np.int64) * 1_000_003 - 2  # arbitrary (also negative) ids
    base = ListwiseKD(1.5)(
        torch.tensor(s), DistillTargets(torch.zeros(n).double(), torch.tensor(t), torch.tensor(g))
    )
    assert base.item() == pytest.approx(np_listwise(s, t, g, 1.5), rel=1e-10)
    for seed in range(3):
        p = np.random.default_rng(seed).permutation(n)
        tg = DistillTargets(torch.zeros(n).double(), torch.tensor(t[p]), torch.tensor(g[p]))
        assert ListwiseKD(1.5)(torch.tensor(s[p]), tg).item() == pytest.approx(base.item(), rel=1e-12)
    # the golden batch reordered so that each request is contiguous
    order = [1, 3, 5, 0, 2, 4]
    tg = targets(labels=[Y[i] for i in order], teacher=[T_[i] for i in order], groups=[G[i] for i in order])
    assert ListwiseKD(1.0)(student([S[i] for i in order]), tg).item() == pytest.approx(LISTWISE_T1, rel=1e-12)


def test_listwise_leaves_singleton_requests_out_of_the_mean() -> None:
    # a request with one candidate has no ordering: adding one changes nothing
    tg = targets(labels=[*Y, 1.0], teacher=[*T_, 4.0], groups=[*G, 99])
    assert ListwiseKD(1.0)(student([*S, -3.0]), tg).item() == pytest.approx(LISTWISE_T1, rel=1e-12)
    # only singletons: 0 with a zero gradient
    s = student([1.0, 2.0, 3.0])
    value = ListwiseKD(1.0)(s, targets(labels=[1.0, 0.0, 1.0], teacher=[0.0, 5.0, -5.0], groups=[1, 2, 3]))
    assert value.item() == 0.0
    value.backward()
    assert s.grad is not None and torch.equal(s.grad, torch.zeros(3, dtype=torch.float64))


def test_group_log_softmax_matches_torch_per_group() -> None:
    x = torch.tensor([1.0, 0.0, 3.0, -2.0, 500.0, 499.0], dtype=torch.float64)
    ids = torch.tensor([5, -1, 5, -1, 8, 8])
    index, n = group_index(ids)
    got = group_log_softmax(x, index, n)
    for gid in (5, -1, 8):
        rows = ids == gid
        assert torch.allclose(got[rows], torch.log_softmax(x[rows], dim=0), rtol=0, atol=1e-12)


def test_listwise_gradient_matches_finite_differences() -> None:
    tg = targets()
    s = student()
    assert torch.autograd.gradcheck(lambda x: ListwiseKD(2.0)(x, tg), (s,))
    assert torch.autograd.gradcheck(lambda x: kd_loss(0.3, 2.0)(x, tg), (s,))


# ---- stability ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "loss", [HardBCE(), SoftBCE(1.0), SoftBCE(0.5), LogitMSE(), ListwiseKD(1.0), ListwiseKD(0.5)], ids=str
)
def test_finite_values_and_gradients_for_large_logits(loss: Loss) -> None:
    s = torch.tensor([50.0, -50.0, 50.0, -50.0, 50.0, 0.0], requires_grad=True)  # float32
    tg = targets(
        labels=[0.0, 1.0, NAN, 1.0, 1.0, 0.0],
        teacher=[-50.0, 50.0, -50.0, 50.0, 50.0, -50.0],
        dtype=torch.float32,
    )
    value = loss(s, tg)
    value.backward()
    assert torch.isfinite(value)
    assert s.grad is not None and torch.all(torch.isfinite(s.grad))
    if not isinstance(loss, LogitMSE):
        assert value.item() > 1.0  # the student is confidently wrong: a large, not a NaN/0, loss


def test_empty_batch_gives_zero() -> None:
    empty = DistillTargets(torch.empty(0), torch.empty(0), torch.empty(0, dtype=torch.int64))
    for loss in [HardBCE(), SoftBCE(2.0), LogitMSE(), ListwiseKD(1.0)]:
        assert loss(torch.empty(0), empty).item() == 0.0, str(loss)


# ---- weighted sum -------------------------------------------------------------------------------


def test_weighted_sum_prints_formula_and_adds_weighted_terms() -> None:
    loss = WeightedSum([(0.5, HardBCE()), (0.5, SoftBCE(2.0)), (0.1, ListwiseKD(1.0))])
    assert str(loss) == "Loss = 0.5 * hard_bce + 0.5 * soft_bce(T=2) + 0.1 * listwise_kd(T=1)"
    expected = 0.5 * HARD + 0.5 * SOFT_T2 + 0.1 * LISTWISE_T1  # = 1.5710817...
    assert loss(student(), targets()).item() == pytest.approx(expected, rel=1e-12)
    parts = loss.components(student(), targets())
    assert parts == pytest.approx(
        {"hard_bce": HARD, "soft_bce(T=2)": SOFT_T2, "listwise_kd(T=1)": LISTWISE_T1, "loss": expected},
        rel=1e-12,
    )
    total, detached = loss.with_components(student(), targets())
    assert total.requires_grad and not any(v.requires_grad for v in detached.values())


def test_kd_loss_mixes_hard_and_soft_per_term_means() -> None:
    loss = kd_loss(alpha=0.3, temperature=2.0)
    assert str(loss) == "Loss = 0.3 * hard_bce + 0.7 * soft_bce(T=2)"
    # hard term: mean over the 4 labelled rows; soft term: mean over all 6 rows
    assert loss(student(), targets()).item() == pytest.approx(0.3 * HARD + 0.7 * SOFT_T2, rel=1e-12)
    assert str(kd_loss(1.0, 2.0)) == "Loss = 1 * hard_bce"
    assert str(kd_loss(0.0, 3.0)) == "Loss = 1 * soft_bce(T=3)"
    # a pure transfer batch (no labels): only the soft term acts
    unlabelled = targets(labels=[NAN] * 6)
    assert loss(student(), unlabelled).item() == pytest.approx(0.7 * SOFT_T2, rel=1e-12)


def test_weighted_sum_rejects_bad_terms() -> None:
    with pytest.raises(ValueError, match="at least one"):
        WeightedSum([])
    with pytest.raises(ValueError, match=r"weight of hard_bce .* got -0.5"):
        WeightedSum([(-0.5, HardBCE())])
    with pytest.raises(ValueError, match=r"soft_bce\(T=2\) appears twice"):
        WeightedSum([(0.5, SoftBCE(2.0)), (0.1, SoftBCE(2.0))])
    with pytest.raises(ValueError, match="alpha"):
        kd_loss(1.5, 2.0)
    with pytest.raises(ValueError, match="temperature"):
        SoftBCE(0.0)
    with pytest.raises(ValueError, match="temperature"):
        ListwiseKD(-1.0)


def test_shape_errors_name_the_tensor() -> None:
    with pytest.raises(ValueError, match=r"student_logits must be 1-D \[B\], got shape \(6, 1\)"):
        HardBCE()(torch.zeros(6, 1), targets())
    with pytest.raises(ValueError, match="student_logits has 5 rows but the targets have 6"):
        kd_loss(0.5, 1.0)(torch.zeros(5), targets())
    with pytest.raises(ValueError, match="teacher_logits has 5 rows but labels has 6"):
        DistillTargets(torch.zeros(6), torch.zeros(5), torch.zeros(6, dtype=torch.int64))
    with pytest.raises(TypeError, match="group_ids must be int64"):
        DistillTargets(torch.zeros(6), torch.zeros(6), torch.zeros(6, dtype=torch.int32))


# ---- config and build_loss ----------------------------------------------------------------------


def test_build_loss_from_config() -> None:
    assert str(build_loss(DistillLossConfig(kind="hard"))) == "Loss = 1 * hard_bce"
    assert build_loss(DistillLossConfig(kind="hard"))(student(), targets()).item() == pytest.approx(
        HARD, rel=1e-12
    )
    cfg = DistillLossConfig(kind="kd", alpha=0.5, temperature=2.0, logit_mse=0.2, listwise=0.1)
    loss = build_loss(cfg)
    assert (
        str(loss) == "Loss = 0.5 * hard_bce + 0.5 * soft_bce(T=2) + 0.2 * logit_mse + 0.1 * listwise_kd(T=1)"
    )
    expected = 0.5 * HARD + 0.5 * SOFT_T2 + 0.2 * MSE + 0.1 * LISTWISE_T1
    assert loss(student(), targets()).item() == pytest.approx(expected, rel=1e-12)
    assert str(build_loss(DistillLossConfig())) == "Loss = 1 * soft_bce(T=1) + 1 * logit_mse"
    assert build_loss(DistillLossConfig(alpha=0.5, logit_mse=0.0, listwise=0.0)) == kd_loss(0.5, 1.0)
    # the hard-label baseline never reads the teacher, whatever the teacher weights say
    hard = DistillLossConfig(kind="hard", logit_mse=1.0, listwise=0.5)
    assert (hard.logit_mse, hard.listwise) == (0.0, 0.0)
    assert str(build_loss(hard)) == "Loss = 1 * hard_bce"
    assert str(build_loss(DistillLossConfig(alpha=0.0, listwise=1.0, listwise_temperature=2.0))) == (
        "Loss = 1 * soft_bce(T=1) + 1 * logit_mse + 1 * listwise_kd(T=2)"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "soft"}, r"kind must be one of hard, kd, got 'soft'"),
        ({"alpha": 1.5}, r"alpha .* must be in \[0, 1\], got 1.5"),
        ({"alpha": -0.1}, r"alpha .* got -0.1"),
        ({"alpha": math.nan}, r"alpha .* got nan"),
        ({"temperature": 0.0}, r"temperature must be a finite number > 0, got 0.0"),
        ({"temperature": math.inf}, r"temperature must be .* got inf"),
        ({"listwise_temperature": -2.0}, r"listwise_temperature must be .* got -2.0"),
        ({"logit_mse": -1.0}, r"logit_mse .* must be a finite number >= 0, got -1.0"),
        ({"listwise": -0.5}, r"listwise .* got -0.5"),
        ({"kind": "hard", "listwise": -0.1}, r"listwise .* got -0.1"),
    ],
)
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DistillLossConfig(**kwargs)  # type: ignore[arg-type]


def test_config_loads_strictly_from_a_mapping() -> None:
    cfg = from_mapping(DistillLossConfig, {"kind": "kd", "alpha": 0.2, "temperature": 3}, source="run.yaml")
    assert str(build_loss(cfg)) == "Loss = 0.2 * hard_bce + 0.8 * soft_bce(T=3) + 1 * logit_mse"
    with pytest.raises(ConfigError, match=r"run.yaml: .*alpha .* got 2"):
        from_mapping(DistillLossConfig, {"alpha": 2}, source="run.yaml", where="distill")
    with pytest.raises(ConfigError, match=r"unknown key 'distill\.temprature'"):
        from_mapping(DistillLossConfig, {"temprature": 2}, source="run.yaml", where="distill")
