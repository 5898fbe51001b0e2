"""Neural ODEs (Chen et al., NeurIPS 2018): our dopri5 against closed forms and torchdiffeq, NFE,
adjoint gradients, planar and continuous normalizing flows, the MNIST table's rows, the latent ODE."""
import math

import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.core.errors import UsageError
from visionzoo.experiments.neural_ode import LatentODE, ring_energy, spirals
from visionzoo.layers.ode import DOPRI5_A, DOPRI5_B_HAT, DOPRI5_C, ODEBlock, initial_step, integrate, odeint_dopri5
from visionzoo.models.flows import (
    CNF,
    MLPDynamics,
    PlanarCNFDynamics,
    PlanarFlow,
    PlanarFlows,
    divergence,
    standard_normal_log_prob,
)
from visionzoo.registry import verify_card

F64 = torch.float64


# ---- the solver ---------------------------------------------------------------------------------
def test_tableau_is_consistent_of_order_five_and_four():
    # row sums equal the nodes; both weight sets satisfy the order conditions Σb = 1, Σbc = 1/2, Σbc² = 1/3,
    # Σbc³ = 1/4 (and Σbc⁴ = 1/5 for the 5th-order weights only)
    for c, row in zip(DOPRI5_C, DOPRI5_A):
        assert math.isclose(sum(row), c, abs_tol=1e-14)
    b5 = DOPRI5_A[6] + (0.0,)
    for power in range(4):
        for b in (b5, DOPRI5_B_HAT):
            assert math.isclose(sum(w * c ** power for w, c in zip(b, DOPRI5_C)), 1 / (power + 1), abs_tol=1e-13)
    assert math.isclose(sum(w * c ** 4 for w, c in zip(b5, DOPRI5_C)), 1 / 5, abs_tol=1e-13)
    assert not math.isclose(sum(w * c ** 4 for w, c in zip(DOPRI5_B_HAT, DOPRI5_C)), 1 / 5, abs_tol=1e-6)


def test_exponential_decay_at_requested_times_both_directions():
    rate = -0.7
    times = torch.tensor([0.0, 0.3, 1.0, 2.5], dtype=F64)
    ys, _ = odeint_dopri5(lambda t, y: rate * y, torch.ones(1, dtype=F64), times, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(ys[:, 0], torch.exp(rate * times), rtol=1e-7, atol=1e-9)
    backwards, _ = odeint_dopri5(lambda t, y: rate * y, torch.ones(1, dtype=F64), times.flip(0), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(backwards[:, 0], torch.exp(rate * (times.flip(0) - 2.5)), rtol=1e-7, atol=1e-9)


def test_rotation_keeps_the_radius_and_reaches_the_rotated_point():
    generator = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=F64)   # dy/dt = Gy: rotation by t radians
    y0 = torch.tensor([[1.0, 0.5]], dtype=F64)
    times = torch.linspace(0, 2 * math.pi, 9, dtype=F64)
    ys, _ = odeint_dopri5(lambda t, y: y @ generator.T, y0, times, rtol=1e-9, atol=1e-9)
    rotations = torch.stack([torch.stack([torch.cos(times), -torch.sin(times)], -1),
                             torch.stack([torch.sin(times), torch.cos(times)], -1)], -2)
    torch.testing.assert_close(ys[:, 0], (rotations @ y0[0]), rtol=0, atol=1e-7)


def test_error_falls_and_nfe_grows_as_the_tolerance_tightens():
    rate = -1.3
    errors, nfes = [], []
    for tolerance in (1e-3, 1e-5, 1e-7, 1e-9):
        ys, stats = odeint_dopri5(lambda t, y: rate * y, torch.ones(3, dtype=F64), [0.0, 4.0], tolerance, tolerance)
        errors.append(float((ys[-1] - math.exp(4 * rate)).abs().max()))
        nfes.append(stats.nfe)
        assert stats.nfe == 2 + 6 * (stats.accepted + stats.rejected)   # f(t0), the probe, six a step (FSAL)
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert all(a < b for a, b in zip(nfes, nfes[1:]))


def test_dense_output_is_fourth_order_between_steps():
    # one forced step of size h, read at its midpoint: the interpolant's error falls like h⁵ (locally)
    rate = -1.0
    errors = []
    for h in (0.4, 0.2):
        ys, stats = odeint_dopri5(lambda t, y: rate * y, torch.ones(1, dtype=F64), [0.0, h / 2, h], rtol=1.0,
                                  atol=1.0, first_step=h)
        assert stats.accepted == 1
        errors.append(abs(float(ys[1, 0]) - math.exp(rate * h / 2)))
    assert 2 ** 4.5 < errors[0] / errors[1] < 2 ** 6.5


def test_matches_torchdiffeq_dopri5():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    torch.manual_seed(0)
    weight = torch.randn(3, 3, dtype=F64)
    func = lambda t, y: torch.tanh(y @ weight) * (1 + t)
    y0 = torch.randn(4, 3, dtype=F64)
    times = torch.linspace(0, 2, 7, dtype=F64)
    accurate = torchdiffeq.odeint(func, y0, times, method="dopri5", rtol=1e-12, atol=1e-12)
    for tolerance in (1e-4, 1e-7):
        ours, _ = odeint_dopri5(func, y0, times, tolerance, tolerance)
        theirs = torchdiffeq.odeint(func, y0, times, method="dopri5", rtol=tolerance, atol=tolerance)
        ours_error, their_error = (ours - accurate).abs().max(), (theirs - accurate).abs().max()
        assert ours_error < 10 * tolerance and ours_error < 5 * their_error + tolerance / 10
        assert (ours - theirs).abs().max() < 10 * tolerance


def test_bad_times_and_tolerances_are_refused():
    func = lambda t, y: y
    with pytest.raises(UsageError, match="increasing"):
        odeint_dopri5(func, torch.ones(1), [0.0, 1.0, 0.5])
    with pytest.raises(UsageError, match="tolerances"):
        odeint_dopri5(func, torch.ones(1), [0.0, 1.0], rtol=0.0, atol=0.0)
    with pytest.raises(UsageError, match="solver"):
        ODEBlock(nn.Identity(), solver="dopri8")


# ---- the ODE block ------------------------------------------------------------------------------
class _Dynamics(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3, 3)

    def forward(self, t, h):
        return torch.tanh(self.layer(h)) * (1 + t)


def test_dopri5_block_reports_nfe_and_adjoint_gradients_match_backpropagation():
    torch.manual_seed(0)
    func = _Dynamics().double()
    h0 = torch.randn(5, 3, dtype=F64, requires_grad=True)
    weights = torch.randn(5, 3, dtype=F64)
    grads, blocks = [], []
    for adjoint in (False, True):
        block = ODEBlock(func, solver="dopri5", adjoint=adjoint, rtol=1e-8, atol=1e-8)
        grads.append(torch.autograd.grad((block(h0) * weights).sum(), (h0, *func.parameters())))
        blocks.append(block)
    for backprop, adjoint in zip(*grads):
        torch.testing.assert_close(adjoint, backprop, rtol=1e-5, atol=1e-6)
    assert blocks[0].nfe > 8 and blocks[1].nfe == blocks[0].nfe and blocks[1].backward_nfe > 8
    _, expected = integrate(func, h0.detach(), 0.0, 1.0, "dopri5", rtol=1e-8, atol=1e-8)
    assert blocks[0].nfe == expected


def test_odenet_with_dopri5_counts_evaluations_and_trains():
    torch.manual_seed(0)
    model = vz.create_model("odenet_mnist", solver="dopri5", rtol=1e-2, atol=1e-2, width=32)
    model(torch.randn(2, 1, 12, 12)).logsumexp(1).sum().backward()
    assert model.nfe >= 8 and model.nfe == model.ode.nfe   # the probe, f(t0) and at least one six-stage step
    assert model.ode.func.conv1.weight.grad.abs().sum() > 0
    loose = vz.create_model("odenet_mnist", solver="dopri5", rtol=1e-1, atol=1e-1, width=32)
    tight = vz.create_model("odenet_mnist", solver="dopri5", rtol=1e-4, atol=1e-4, width=32)
    tight.load_state_dict(loose.state_dict())
    x = torch.randn(2, 1, 12, 12)
    with torch.no_grad():
        loose(x), tight(x)
    assert tight.nfe > loose.nfe


# ---- the MNIST table ----------------------------------------------------------------------------
def test_table_rows_have_the_papers_parameter_counts():
    conv = lambda cin, cout, k, bias=True: cin * cout * k * k + (cout if bias else 0)
    gn = 2 * 64
    block = gn + conv(64, 64, 3, False) + gn + conv(64, 64, 3, False)
    resnet = conv(1, 64, 3) + 2 * (block + conv(64, 64, 1, False)) + 6 * block + gn + 64 * 10 + 10
    assert vz.count_params(vz.create_model("odenet_resnet_mnist")) == resnet
    assert vz.count_params(vz.create_model("mlp1_mnist")) == 784 * 300 + 300 + 300 * 10 + 10
    for name in ("odenet_resnet_mnist", "mlp1_mnist"):
        ok, why = verify_card(vz.model_card(name))
        assert ok and why == "ok", why
    # the ODE-Net with the ResNet's downsampling: six blocks replaced by one ODE function
    ode_function = gn + conv(65, 64, 3) + gn + conv(65, 64, 3) + gn
    res_odenet = vz.create_model("odenet_mnist", downsampling="res")
    assert vz.count_params(res_odenet) == resnet - 6 * block + ode_function


def test_resnet_row_blocks_are_residual_and_shapes_follow_the_authors():
    torch.manual_seed(0)
    model = vz.create_model("odenet_resnet_mnist").eval()
    x = torch.randn(2, 1, 28, 28)
    stem = model.downsampling(x)
    assert stem.shape == (2, 64, 7, 7)
    block = model.blocks[0]
    with torch.no_grad():
        nn.init.zeros_(block.conv2.weight)
        torch.testing.assert_close(block(stem), stem)   # a zero residual branch leaves the identity
    assert model(x).shape == (2, 10)


# ---- normalizing flows --------------------------------------------------------------------------
def test_planar_log_det_equals_the_jacobians_and_the_flow_is_invertible():
    torch.manual_seed(0)
    flow = PlanarFlow(3).double()
    with torch.no_grad():
        flow.w.copy_(torch.tensor([1.0, -2.0, 0.5]))
        flow.u.copy_(-3 * flow.w)                 # wᵀu ≪ −1: the unconstrained flow would fold
    z = torch.randn(6, 3, dtype=F64)
    _, log_det = flow(z)
    for i in range(len(z)):
        jacobian = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], z[i])
        sign, log_abs = torch.linalg.slogdet(jacobian)
        assert sign > 0
        torch.testing.assert_close(log_det[i], log_abs)
    assert (flow.w @ flow.constrained_u()).item() > -1
    # along w, wᵀf(z) = s + wᵀû·tanh(s + b) for s = wᵀz: strictly increasing, so f is one-to-one
    line = torch.linspace(-6, 6, 400, dtype=F64)[:, None] * flow.w / flow.w.norm().square()
    with torch.no_grad():
        assert ((flow(line)[0] @ flow.w).diff() > 0).all()


def test_planar_flows_density_integrates_to_one_in_one_dimension():
    # in 1-D a flow is monotone: pushing a fine grid of z0 forward, Σ q(z_K)·Δz_K ≈ 1
    torch.manual_seed(0)
    flows = PlanarFlows(1, 4).double()
    z0 = torch.linspace(-9, 9, 20001, dtype=F64)[:, None]
    with torch.no_grad():
        z, log_q = flows(z0)
    assert (z.diff(dim=0) > 0).all()
    mass = float((log_q[:-1].exp() * z[:, 0].diff()).sum())
    assert abs(mass - 1) < 1e-3


def test_cnf_with_linear_dynamics_matches_the_closed_form():
    a = torch.tensor([[-0.4, 1.1], [-0.3, 0.7]], dtype=F64)

    class Linear(nn.Module):
        def forward(self, t, z):
            return z @ a.T

    cnf = CNF(Linear(), rtol=1e-9, atol=1e-9)
    z0 = torch.randn(5, 2, dtype=F64)
    z1, log_p1 = cnf(z0)
    torch.testing.assert_close(z1, z0 @ torch.linalg.matrix_exp(a).T)
    torch.testing.assert_close(log_p1, standard_normal_log_prob(z0) - torch.trace(a))
    # the density's inverse solve returns the same log-density
    torch.testing.assert_close(cnf.log_prob(z1), log_p1, rtol=1e-7, atol=1e-7)


def test_exact_trace_equals_the_planar_closed_form():
    torch.manual_seed(0)
    dynamics = PlanarCNFDynamics(2, 5).double()
    z = torch.randn(7, 2, dtype=F64, requires_grad=True)
    u, w, b = dynamics.parameters_at(0.3)
    slopes = 1 - torch.tanh(z @ w.T + b).square()          # tr ∂/∂z Σ uₘ tanh(wₘᵀz + bₘ) = Σ (uₘ·wₘ) h'
    torch.testing.assert_close(divergence(dynamics(0.3, z), z, False), slopes @ (u * w).sum(1))


@pytest.mark.parametrize("dynamics", [MLPDynamics(2, 16), PlanarCNFDynamics(2, 8)], ids=["mlp", "planar"])
def test_cnf_density_integrates_to_one_on_a_grid(dynamics):
    torch.manual_seed(0)
    cnf = CNF(dynamics.double(), rtol=1e-5, atol=1e-5)
    axis = torch.linspace(-7, 7, 57, dtype=F64)
    xs, ys = torch.meshgrid(axis, axis, indexing="xy")
    with torch.no_grad():
        log_p = cnf.log_prob(torch.stack([xs.flatten(), ys.flatten()], 1))
    mass = float(log_p.exp().sum() * (axis[1] - axis[0]) ** 2)
    assert abs(mass - 1) < 0.01
    assert cnf.stats.nfe > 0


def test_cnf_trains_on_the_reverse_kl():
    torch.manual_seed(0)
    cnf = CNF(PlanarCNFDynamics(2, 4), rtol=1e-3, atol=1e-3)
    optimiser = torch.optim.Adam(cnf.parameters(), lr=2e-2)
    fixed = torch.randn(64, 2)
    losses = []
    for _ in range(10):
        z, log_q = cnf(fixed)
        loss = (log_q + ring_energy(z)).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


# ---- the latent ODE -----------------------------------------------------------------------------
def test_spirals_turn_both_ways_and_grow():
    times = torch.linspace(0, 1, 11)
    paths = spirals(200, times, torch.Generator().manual_seed(0))
    angles = torch.atan2(paths[..., 1], paths[..., 0])
    turn = torch.remainder(angles[:, 1] - angles[:, 0] + math.pi, 2 * math.pi) - math.pi
    torch.testing.assert_close(turn.abs(), torch.full((200,), 0.1), rtol=0, atol=1e-5)
    assert 50 < int((turn > 0).sum()) < 150
    assert (paths.norm(dim=-1).diff(dim=1) > 0).all()


def test_latent_ode_encoder_ignores_unobserved_points_and_elbo_is_differentiable():
    torch.manual_seed(0)
    model = LatentODE()
    times = torch.tensor([0.0, 0.4, 0.5, 1.3])
    x = torch.randn(3, 4, 2)
    mask = torch.tensor([[1.0, 0, 1, 1], [1, 1, 1, 1], [1, 0, 0, 1]])
    changed = x.clone()
    changed[mask == 0] = 100.0
    for first, second in zip(model.encode(x, mask, times), model.encode(changed, mask, times)):
        torch.testing.assert_close(first, second)
    elbo = model.elbo(x, mask, times)
    elbo.backward()
    assert model.dynamics[0].weight.grad.abs().sum() > 0 and model.nfe > 0


def test_initial_step_is_hairers_starting_step():
    # Hairer, Nørsett, Wanner Sec. II.4: h0 = 0.01·d0/d1, an Euler probe at t0 + h0, d2 = ‖f1 − f0‖/h0,
    # h1 = (0.01 / max(d1, d2))^(1/5) for dopri5, first step min(100·h0, h1). For dy/dt = −2y, y0 = 1,
    # rtol = 0, atol = 1: d0 = 1, d1 = 2, h0 = 0.005, d2 = |−1.98 + 2| / 0.005 = 4.
    probes = []

    def func(t, y):
        probes.append(t)
        return -2 * y

    y0 = torch.ones(1, dtype=F64)
    size = initial_step(func, 0.0, y0, func(0.0, y0), 1.0, rtol=0.0, atol=1.0)
    assert probes[1] == pytest.approx(0.005)
    assert size == pytest.approx((0.01 / 4) ** (1 / 5))
    # d0 < 1e-5 (y0 = 0): h0 = 1e-6, and 100·h0 caps the step
    assert initial_step(lambda t, y: torch.ones_like(y), 0.0, torch.zeros(1, dtype=F64), torch.ones(1, dtype=F64),
                        1.0, rtol=0.0, atol=1.0) == pytest.approx(1e-4)


def _quartic_error_constant():
    # dy/dt = 5t⁴: 5th-order weights integrate it exactly, the embedded 4th-order ones miss by
    # 5h⁵(1/5 − Σ b̂c⁴) on every step, whatever t (Σ b̂cᵏ = 1/(k+1) for k ≤ 3)
    return 1 - 5 * sum(b * c ** 4 for b, c in zip(DOPRI5_B_HAT, DOPRI5_C))


def test_error_is_measured_against_the_larger_of_the_old_and_new_magnitudes():
    # tolerance = atol + rtol·max(|y0|, |y1|): from y0 = 0 to y1 = 1 with atol = 0 the scale is 1, so the
    # one forced step (error ≈ 1.3e-3 < rtol = 1) is accepted; min(|y0|, |y1|) = 0 would reject every step
    assert 0 < abs(_quartic_error_constant()) < 1e-2
    ys, stats = odeint_dopri5(lambda t, y: 5 * t ** 4 * torch.ones_like(y), torch.zeros(1, dtype=F64), [0.0, 1.0],
                              rtol=1.0, atol=0.0, first_step=1.0)
    assert (stats.accepted, stats.rejected) == (1, 0)
    assert float(ys[-1, 0]) == pytest.approx(1.0, abs=1e-12)


def test_step_never_shrinks_after_an_accepted_step():
    # next h = h·min(10, max(1, 0.9·ratio^(−1/5))) after an accepted step: with ratio 0.8 the formula gives
    # 0.94 < 1, so the second step keeps h = 1 and its second stage sits at t = 1 + h/5
    times = []

    def func(t, y):
        times.append(t)
        return 5 * t ** 4 * torch.ones_like(y)

    rtol = abs(_quartic_error_constant()) / 0.8   # first step: error / (rtol·|y1|) = 0.8
    _, stats = odeint_dopri5(func, torch.zeros(1, dtype=F64), [0.0, 3.0], rtol=rtol, atol=0.0, first_step=1.0)
    assert stats.rejected == 0
    assert times[1:7] == pytest.approx(list(DOPRI5_C[1:]))   # the first step's stages at c·h, h = 1
    assert times[7] == pytest.approx(1.2)


def test_concat_conv_sees_the_time_as_a_constant_extra_channel():
    # Chen et al.'s ODE-Net f(h, t): the convolution reads [h, t] with t filling one more input channel
    from visionzoo.models.odenet import ConcatConv2d
    torch.manual_seed(0)
    conv = ConcatConv2d(2, 3)
    h = torch.randn(1, 2, 5, 5)
    for t in (0.0, 0.7):
        expected = torch.nn.functional.conv2d(torch.cat([h, torch.full((1, 1, 5, 5), t)], 1), conv.weight, conv.bias,
                                              padding=1)
        torch.testing.assert_close(conv(t, h), expected)


def test_the_downsampling_blocks_shortcut_is_a_strided_conv_of_the_pre_activated_input():
    # the authors' ResBlock: shortcut = downsample(ReLU(GN(x))), not of x itself
    from visionzoo.models.odenet import PreActBlock
    torch.manual_seed(0)
    block = PreActBlock(4, stride=2).eval()
    x = torch.randn(2, 4, 8, 8) * 3 - 1
    with torch.no_grad():
        out = block.relu1(block.norm1(x.clone()))
        expected = block.conv2(block.relu2(block.norm2(block.conv1(out)))) + block.downsample(out)
        torch.testing.assert_close(block(x.clone()), expected)

