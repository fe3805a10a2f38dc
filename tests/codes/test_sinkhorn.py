"""Log-domain Sinkhorn: marginals, a known answer, parity with float64, stability, errors."""

from __future__ import annotations

import math

import pytest
import torch

from toolweaver.codes.sinkhorn import normalise_cost, sinkhorn, sinkhorn_log


def reference_sinkhorn_f64(cost: torch.Tensor, epsilon: float, iters: int) -> torch.Tensor:
    """Textbook exp-domain Sinkhorn in float64 with uniform marginals (the reference)."""
    c = cost.double()
    n, m = c.shape
    kernel = torch.exp(-c / epsilon)
    a = torch.full((n,), 1.0 / n, dtype=torch.float64)
    b = torch.full((m,), 1.0 / m, dtype=torch.float64)
    v = torch.ones(m, dtype=torch.float64)
    for _ in range(iters):
        u = a / (kernel @ v)
        v = b / (kernel.T @ u)
    return u[:, None] * kernel * v[None, :]


def random_cost(n: int, m: int, seed: int) -> torch.Tensor:
    return torch.rand((n, m), generator=torch.Generator().manual_seed(seed))


def test_uniform_marginals() -> None:
    plan = sinkhorn(random_cost(7, 5, 0), 0.1, tol=1e-7)
    assert torch.allclose(plan.sum(1), torch.full((7,), 1 / 7), atol=1e-5)
    assert torch.allclose(plan.sum(0), torch.full((5,), 1 / 5), atol=1e-5)


def test_custom_marginals_are_met() -> None:
    row = torch.tensor([0.5, 0.25, 0.25])
    col = torch.tensor([0.1, 0.2, 0.3, 0.4])
    plan = sinkhorn(random_cost(3, 4, 1), 0.05, row_mass=row, col_mass=col, tol=1e-7)
    assert torch.allclose(plan.sum(1), row, atol=1e-5)
    assert torch.allclose(plan.sum(0), col, atol=1e-5)


def test_known_permutation_is_recovered() -> None:
    permutation = torch.tensor([3, 0, 4, 1, 2])
    cost = torch.ones(5, 5)
    cost[torch.arange(5), permutation] = 0.0
    plan = sinkhorn(cost, 0.01)
    assert torch.equal(plan.argmax(1), permutation)
    # essentially all mass on the permutation: 1/5 per row
    assert torch.allclose(plan[torch.arange(5), permutation], torch.full((5,), 0.2), atol=1e-4)


def test_parity_with_float64_reference_at_moderate_epsilon() -> None:
    cost = random_cost(12, 9, 2)
    ours = sinkhorn(cost, 0.1, max_iters=500, tol=0.0)
    reference = reference_sinkhorn_f64(cost, 0.1, 500)
    assert torch.allclose(ours.double(), reference, atol=1e-6, rtol=1e-4)


def test_finite_in_float32_at_epsilon_1e_3() -> None:
    cost = 1.0 + random_cost(64, 32, 3) * 10.0  # exp(-1 / 1e-3) underflows even in float64
    assert torch.exp(-cost.double() / 1e-3).sum() == 0.0  # the exp-domain kernel is all zeros
    result = sinkhorn_log(cost.float(), 1e-3, max_iters=300)
    assert result.log_plan.dtype == torch.float32
    assert torch.isfinite(result.log_plan).all()
    plan = result.plan
    assert torch.allclose(plan.sum(0), torch.full((32,), 1 / 32), atol=1e-5)
    assert math.isfinite(result.marginal_error)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_cost_raises(bad: float) -> None:
    cost = random_cost(4, 4, 4)
    cost[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        sinkhorn(cost, 0.1)


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn(random_cost(3, 3, 0), 0.0)
    with pytest.raises(ValueError, match="must match"):
        sinkhorn(random_cost(2, 2, 0), 0.1, row_mass=torch.tensor([1.0, 1.0]), col_mass=torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="shape"):
        sinkhorn(random_cost(2, 3, 0), 0.1, row_mass=torch.tensor([1.0]))


def test_normalise_cost_maps_to_unit_interval() -> None:
    cost = normalise_cost(torch.tensor([[2.0, 4.0], [6.0, 10.0]]))
    assert torch.allclose(cost, torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
