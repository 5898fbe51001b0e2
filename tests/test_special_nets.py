"""Special networks: CapsNet, spatial transformer, MCDNN, binary/XNOR layers, ConvNet-AIG, ODE-Net,
each tested by the property its paper defines it by."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

import visionzoo as vz
from visionzoo.compress.binarize import materialize
from visionzoo.layers.binary import BinaryConv2d, BinaryLinear, binarize, filter_scale, sign_ste, weight_memory_bits
from visionzoo.layers.capsule import margin_loss, routing, squash
from visionzoo.layers.spatial_transformer import affine_grid, bilinear_sample
from visionzoo.models.adaptive import GatedBlock
from visionzoo.models.mcdnn import MCDNN, committee, contrast_normalised, width_normalised
from visionzoo.models.odenet import ODEBlock, odeint_fixed
from visionzoo.weights import load_checkpoint


# ---- CapsNet ------------------------------------------------------------------------------------
def test_squash_shrinks_norms_below_one_and_keeps_direction():
    torch.manual_seed(0)
    s = torch.randn(50, 16) * torch.logspace(-3, 3, 50)[:, None]
    v = squash(s)
    norm_s, norm_v = s.norm(dim=1), v.norm(dim=1)
    assert (norm_v < 1).all()
    torch.testing.assert_close(norm_v, norm_s ** 2 / (1 + norm_s ** 2))
    torch.testing.assert_close(F.cosine_similarity(s, v, dim=1), torch.ones(50))


def test_coupling_coefficients_sum_to_one_over_output_capsules():
    torch.manual_seed(0)
    predictions = torch.randn(2, 30, 10, 16)
    for iterations in (1, 3):
        outputs, coupling = routing(predictions, iterations)
        torch.testing.assert_close(coupling.sum(2), torch.ones(2, 30))
        assert outputs.shape == (2, 10, 16)
    # One iteration: b = 0, every coupling 1/10, v_j = squash(mean_i û_j|i · 30 / 10 … ) exactly.
    outputs, coupling = routing(predictions, 1)
    torch.testing.assert_close(coupling, torch.full((2, 30, 10), 0.1))
    torch.testing.assert_close(outputs, squash(predictions.sum(1) / 10))
    # Routing moves coupling towards agreeing outputs: not uniform any more after 3 iterations.
    assert not torch.allclose(routing(predictions, 3)[1], coupling)


def _procedure_1(u_hat: list, iterations: int):
    """Sabour et al.'s Procedure 1 written out over i and j, with Eq. 1's squash: (v_j, the last c_ij)."""
    inputs, outputs = len(u_hat), len(u_hat[0])
    b = [[0.0] * outputs for _ in range(inputs)]
    for _ in range(iterations):
        c = [[math.exp(b[i][j]) / sum(math.exp(x) for x in b[i]) for j in range(outputs)] for i in range(inputs)]
        s = [sum(c[i][j] * u_hat[i][j] for i in range(inputs)) for j in range(outputs)]
        v = [s_j.norm() ** 2 / (1 + s_j.norm() ** 2) * s_j / s_j.norm() for s_j in s]
        b = [[b[i][j] + float(u_hat[i][j] @ v[j]) for j in range(outputs)] for i in range(inputs)]
    return torch.stack(v), torch.tensor(c, dtype=torch.float64)


@pytest.mark.parametrize("iterations", [2, 3])
def test_routing_by_agreement_is_procedure_1(iterations):
    torch.manual_seed(1)
    predictions = torch.randn(1, 5, 3, 4, dtype=torch.float64)
    outputs, coupling = routing(predictions, iterations)
    v, c = _procedure_1([[predictions[0, i, j] for j in range(3)] for i in range(5)], iterations)
    torch.testing.assert_close(outputs[0], v)
    torch.testing.assert_close(coupling[0], c)


def test_margin_loss_by_hand():
    lengths = torch.tensor([[0.95, 0.05, 0.5], [0.2, 0.7, 0.0]])
    labels = torch.tensor([0, 2])
    first = 0 + 0.5 * (0 + 0.4 ** 2)                     # present 0.95 ≥ 0.9; 0.05 ≤ 0.1; 0.5 > 0.1
    second = 0.5 * (0.1 ** 2 + 0.6 ** 2) + 0.9 ** 2      # absent 0.2, 0.7; present 0.0
    torch.testing.assert_close(margin_loss(lengths, labels), torch.tensor((first + second) / 2))


def test_capsnet_parameters_outputs_and_reconstruction_mask():
    model = vz.create_model("capsnet")
    decoder = sum(p.numel() for p in model.decoder.parameters())
    assert vz.count_params(model) - decoder == 6_804_224  # the paper's 6.8M without the decoder
    assert model.num_primary == 1152
    small = vz.create_model("capsnet", image_size=20)  # 2×2 positions: 128 primary capsules
    x = torch.rand(4, 1, 20, 20)
    small.eval()
    lengths = small(x)
    assert lengths.shape == (4, 10) and ((lengths >= 0) & (lengths < 1)).all()
    small.train()
    out_lengths, capsules, images = small(x)
    assert capsules.shape == (4, 10, 16) and images is x
    torch.testing.assert_close(out_lengths, capsules.norm(dim=-1))
    # Only the masked class's capsule reaches the decoder.
    labels = torch.tensor([1, 2, 3, 4])
    changed = capsules.clone()
    changed[:, 0] += 5
    torch.testing.assert_close(small.reconstruct(capsules, labels), small.reconstruct(changed, labels))


def test_capsnet_short_training_lowers_the_loss():
    torch.manual_seed(0)
    model = vz.create_model("capsnet", image_size=20)  # 2×2 positions: 128 primary capsules
    x, labels = torch.rand(8, 1, 20, 20), torch.arange(8) % 10
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(6):
        loss, logits = model.training_loss(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


# ---- Spatial transformer ------------------------------------------------------------------------
def test_grid_generator_equals_torch_affine_grid():
    theta = torch.randn(3, 2, 3)
    torch.testing.assert_close(affine_grid(theta, 5, 7),
                               F.affine_grid(theta, [3, 1, 5, 7], align_corners=False))


def test_bilinear_sampler_equals_grid_sample_values_and_gradients():
    torch.manual_seed(0)
    maps = torch.randn(2, 3, 6, 5, requires_grad=True)
    grid = (torch.rand(2, 4, 7, 2) * 2.6 - 1.3).requires_grad_()  # some points outside the map
    ours = bilinear_sample(maps, grid)
    reference = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(ours, reference)
    weights = torch.randn_like(ours)
    grads = torch.autograd.grad((ours * weights).sum(), (maps, grid))
    reference_grads = torch.autograd.grad((reference * weights).sum(), (maps, grid))
    for g, r in zip(grads, reference_grads):
        torch.testing.assert_close(g, r)


def test_bilinear_sampler_is_the_double_sum_of_eq5():
    torch.manual_seed(0)
    maps, height, width = torch.randn(1, 2, 4, 5), 4, 5
    grid = torch.rand(1, 3, 3, 2) * 2 - 1
    xs = ((grid[..., 0] + 1) * width - 1) / 2
    ys = ((grid[..., 1] + 1) * height - 1) / 2
    m = torch.arange(width).view(1, 1, 1, 1, width)
    n = torch.arange(height).view(1, 1, 1, height, 1)
    kernel = ((1 - (xs[..., None, None] - m).abs()).clamp_min(0)
              * (1 - (ys[..., None, None] - n).abs()).clamp_min(0))  # (1, 3, 3, H, W)
    expected = torch.einsum("bchw,bijhw->bcij", maps, kernel)
    torch.testing.assert_close(bilinear_sample(maps, grid), expected)


def test_spatial_transformer_starts_as_the_identity():
    torch.manual_seed(0)
    model = vz.create_model("stn_cnn")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model.transformer(x), x)
    model.fc.weight.grad = None
    logits = model(x)
    logits.square().sum().backward()
    assert model.transformer.theta.weight.grad.abs().sum() > 0  # θ learns through the sampler


# ---- MCDNN --------------------------------------------------------------------------------------
def test_mcdnn_column_is_the_papers_mnist_net():
    column = vz.create_model("mcdnn_column")
    # 20C4: 20·16+20, 40C5: 40·20·25+40, 150N from 40·3·3, 10N.
    assert vz.count_params(column) == 340 + 20_040 + 360 * 150 + 150 + 1_510
    assert column.forward_features(torch.zeros(1, 1, 29, 29)).shape == (1, 40, 3, 3)
    assert column.forward_features(torch.zeros(1, 1, 28, 28)).shape == (1, 40, 3, 3)


def test_mcdnn_averages_the_columns_softmax():
    torch.manual_seed(0)
    model = vz.create_model("mcdnn").eval()
    x = torch.randn(3, 1, 28, 28)
    expected = torch.stack([column(x).softmax(1) for column in model.columns]).mean(0)
    torch.testing.assert_close(model(x).exp(), expected)
    assert [c.preprocessing for c in model.columns] == ["original", "width10", "width14", "width18",
                                                        "contrast"]


def test_width_normalisation_stretches_the_ink_to_the_width():
    images = torch.zeros(2, 1, 28, 28)
    images[0, 0, 8:20, 3:9] = 1.0     # 6 px wide, off-centre
    images[1, 0, 8:20, 10:24] = 1.0   # 14 px wide
    out = width_normalised(images, 10)
    ink_columns = (out.amax(dim=(1, 2)) > 0.5).float()
    assert ink_columns.sum(1).tolist() == [10, 10]
    centre = (ink_columns * torch.arange(28)).sum(1) / ink_columns.sum(1)
    torch.testing.assert_close(centre, torch.full((2,), 13.5))
    torch.testing.assert_close(out.amax(dim=(1, 3)), images.amax(dim=(1, 3)))  # rows untouched


def test_contrast_normalisation_ignores_brightness_and_contrast():
    torch.manual_seed(0)
    images = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(contrast_normalised(3 * images + 7), contrast_normalised(images),
                               atol=1e-4, rtol=1e-4)


def test_committee_from_trained_column_checkpoints(tmp_path):
    columns = []
    for i, preprocessing in enumerate(("original", "width12")):
        torch.manual_seed(i)
        column = vz.create_model("mcdnn_column", preprocessing=preprocessing)
        run = tmp_path / f"run{i}"
        run.mkdir()
        save_file(column.state_dict(), str(run / "model.safetensors"))
        (run / "model.json").write_text(json.dumps({"name": "mcdnn_column", "kwargs": {
            "num_classes": 10, "in_chans": 1, "preprocessing": preprocessing}}))
        columns.append(column.eval())
    joined = committee(load_checkpoint(path)[0] for path in (tmp_path / "run0", tmp_path / "run1" / "model.safetensors"))
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(joined(x), MCDNN(columns).eval()(x))
    with pytest.raises(ValueError, match="at least one column"):
        committee([])


# ---- Binary weights and XNOR --------------------------------------------------------------------
def test_alpha_is_the_mean_absolute_weight_of_each_filter():
    weight = torch.randn(4, 3, 3, 3)
    expected = torch.stack([w.abs().sum() / w.numel() for w in weight])
    torch.testing.assert_close(filter_scale(weight).flatten(), expected)


def test_bwn_forward_is_alpha_b_convolved_and_weights_stay_real():
    torch.manual_seed(0)
    layer = BinaryConv2d(3, 4, 3, padding=1, mode="bwn")
    x = torch.randn(2, 3, 6, 6)
    alpha = layer.weight.detach().abs().mean((1, 2, 3))
    expected = F.conv2d(x, alpha.view(-1, 1, 1, 1) * layer.weight.detach().sign(), layer.bias, padding=1)
    out = layer(x)
    torch.testing.assert_close(out, expected)
    # The notes' rule: W ← W − η ∂J/∂W̃, the gradient for W̃ = αB applied to the real W.
    upstream = torch.randn_like(out)
    out.backward(upstream)
    approximation = (alpha.view(-1, 1, 1, 1) * layer.weight.detach().sign()).requires_grad_()
    F.conv2d(x, approximation, layer.bias.detach(), padding=1).backward(upstream)
    torch.testing.assert_close(layer.weight.grad, approximation.grad)
    before = layer.weight.detach().clone()
    torch.optim.SGD(layer.parameters(), lr=0.1).step()
    torch.testing.assert_close(layer.weight.detach(), before - 0.1 * approximation.grad)
    assert layer.weight.detach().abs().unique().numel() > 2  # still real-valued


def test_xnor_forward_is_binary_convolution_scaled_by_k_and_alpha():
    torch.manual_seed(0)
    layer = BinaryConv2d(3, 4, 3, stride=2, padding=1, bias=False, mode="xnor").eval()
    x = torch.randn(2, 3, 7, 7)
    normalised = layer.input_norm(x)
    alpha = layer.weight.detach().abs().mean((1, 2, 3)).view(1, -1, 1, 1)
    signs = torch.where(normalised >= 0, 1.0, -1.0)
    binary = F.conv2d(signs, torch.where(layer.weight >= 0, 1.0, -1.0), stride=2, padding=1)
    # K by hand: A = mean_c |I|, then the 3×3 window average at each output position.
    padded = F.pad(normalised.abs().mean(1), (1, 1, 1, 1))
    k = torch.stack([torch.stack([padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].mean((1, 2))
                                  for j in range(4)], -1) for i in range(4)], -2)[:, None]
    torch.testing.assert_close(layer(x), binary * k * alpha)


def test_xnor_linear_scales_by_mean_absolute_input():
    torch.manual_seed(0)
    layer = BinaryLinear(6, 3, mode="xnor").eval()
    x = torch.randn(4, 6)
    normalised = layer.input_norm(x)
    alpha = layer.weight.detach().abs().mean(1)
    expected = (torch.where(normalised >= 0, 1.0, -1.0) @ torch.where(layer.weight >= 0, 1.0, -1.0).t()
                * normalised.abs().mean(1, keepdim=True) * alpha + layer.bias)
    torch.testing.assert_close(layer(x), expected)


def test_straight_through_estimator_passes_gradient_only_inside_unit_interval():
    x = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.5, 1.0, 1.5], requires_grad=True)
    out = sign_ste(x)
    assert out.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    out.backward(torch.full_like(x, 3.0))
    assert x.grad.tolist() == [0, 3, 3, 3, 3, 3, 0]


def test_zero_weight_binarises_to_plus_alpha_and_materialises_so():
    # XNOR-Net Sec. 3.1: B = sign(W) with sign(0) = +1, α = ‖W‖₁/n = 1 for the row [0, 1, −2]; the stored
    # (materialised) weight of compress.binarize is the same αB
    layer = BinaryLinear(3, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 1.0, -2.0]]))
    assert layer(torch.eye(3)).flatten().tolist() == [1.0, 1.0, -1.0]
    model = nn.Sequential(nn.Linear(3, 3), layer, nn.Linear(1, 1))
    materialize(model)
    assert layer.weight.flatten().tolist() == [1.0, 1.0, -1.0]


def test_weight_memory_is_one_bit_per_weight_plus_one_float_alpha_per_filter():
    # the paper's storage: n sign bits and one 32-bit α per output filter; real layers 32 bits a weight
    model = nn.Sequential(nn.Conv2d(3, 4, 3), BinaryConv2d(4, 5, 3), nn.Linear(5, 2))
    assert weight_memory_bits(model) == 32 * 108 + (180 + 32 * 5) + 32 * 10


def test_binarize_keeps_first_and_last_layers_real_and_saves_32x_memory():
    torch.manual_seed(0)
    real = vz.create_model("resnet18", num_classes=10, image_size=28)
    binary = vz.create_model("bwn_resnet18", num_classes=10, image_size=28)
    assert type(binary.conv1) is nn.Conv2d and type(binary.fc) is nn.Linear
    swapped = [m for m in binary.modules() if isinstance(m, BinaryConv2d)]
    assert len(swapped) == sum(isinstance(m, nn.Conv2d) for m in real.modules()) - 1
    binary.load_state_dict(real.state_dict())  # same names: a real checkpoint loads
    layer_saving = sum(32 * m.weight.numel() for m in swapped) / sum(
        m.weight.numel() + 32 * m.weight.shape[0] for m in swapped)
    assert 31 < layer_saving < 32
    assert weight_memory_bits(real) / weight_memory_bits(binary) > 25  # first/last stay 32-bit
    xnor = vz.create_model("xnor_nin_cifar10")
    layers = [m for m in xnor.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert type(layers[0]) is nn.Conv2d and type(layers[-1]) is nn.Conv2d
    assert all(isinstance(m, BinaryConv2d) and m.mode == "xnor" for m in layers[1:-1])
    with pytest.raises(ValueError, match="mode must be one of"):  # ternary weights are layers.ternary's (tests/test_ternary.py)
        binarize(nn.Sequential(nn.Conv2d(1, 1, 1)), mode="twn")


# ---- ConvNet-AIG --------------------------------------------------------------------------------
def _gate_bias(model, execute: float):
    for block in model.modules():
        if isinstance(block, GatedBlock):
            with torch.no_grad():
                block.gate.estimator[-1].bias.copy_(torch.tensor([0.0, execute]))


def test_aig_gates_are_hard_and_trainable_and_target_loss_by_hand():
    torch.manual_seed(0)
    model = vz.create_model("aig_resnet20_cifar")
    x, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    model.train()
    logits, gates = model(x)
    assert gates.shape == (4, 9) and set(gates.unique().tolist()) <= {0.0, 1.0}
    loss, _ = model.training_loss((logits, gates), labels, 0.0)
    expected = F.cross_entropy(logits, labels) + ((gates.mean(0) - 0.6) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    gate_grads = [m.gate.estimator[0].weight.grad for m in model.modules() if isinstance(m, GatedBlock)]
    assert all(g is not None for g in gate_grads) and any(g.abs().sum() > 0 for g in gate_grads)
    model.eval()
    assert model(x).shape == (4, 10)


def test_aig_closed_gate_skips_the_residual():
    torch.manual_seed(0)
    block = GatedBlock(8, 8, shortcut="A").eval()
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        block.gate.estimator[-1].bias.copy_(torch.tensor([50.0, 0.0]))
        out, gate = block.gated_forward(x)
    assert gate.tolist() == [0.0, 0.0]
    torch.testing.assert_close(out, F.relu(x))


def test_aig_executed_macs_between_skipping_all_and_running_all():
    torch.manual_seed(0)
    model = vz.create_model("aig_resnet20_cifar")
    x = torch.randn(4, 3, 32, 32)
    full = vz.count_macs(model, (3, 32, 32))
    _gate_bias(model, 50.0)
    assert model.block_execution_rates(x).tolist() == [1.0] * 9
    assert model.executed_macs(x) == full
    _gate_bias(model, -50.0)
    assert model.block_execution_rates(x).sum() == 0
    # ResNet-20's branches: 3×3 convs (c_in, c_out, output side); stages 2 and 3 open with a
    # strided conv from the previous width.
    convs = ([(16, 16, 32)] * 6 + [(16, 32, 16)] + [(32, 32, 16)] * 5 + [(32, 64, 8)]
             + [(64, 64, 8)] * 5)
    branches = sum(9 * cin * cout * side * side for cin, cout, side in convs)
    assert model.executed_macs(x) == full - branches


# ---- ODE-Net ------------------------------------------------------------------------------------
def test_fixed_step_solvers_converge_at_their_order():
    decay = lambda t, h: -h   # h(1) = e^{-1}
    h0 = torch.ones(1, dtype=torch.float64)
    exact = math.exp(-1)
    euler = [abs(odeint_fixed(decay, h0, steps=n, method="euler").item() - exact) for n in (10, 20)]
    rk4 = [abs(odeint_fixed(decay, h0, steps=n, method="rk4").item() - exact) for n in (2, 4)]
    assert 1.8 < euler[0] / euler[1] < 2.2   # first order
    assert 12 < rk4[0] / rk4[1] < 20         # fourth order
    assert rk4[1] < 1e-4


def test_one_euler_step_is_a_residual_block():
    torch.manual_seed(0)
    model = vz.create_model("odenet_mnist", steps=1, solver="euler").eval()
    h = torch.randn(2, 64, 6, 6)
    torch.testing.assert_close(model.ode(h), h + model.ode.func(0.0, h))


def test_odenet_mnist_size_and_gradients():
    model = vz.create_model("odenet_mnist")
    # The authors' layer list, counted by hand: conv 1→64 3×3, GN, conv 64→64 4×4, GN, conv 64→64 4×4;
    # f = GN, conv 65→64 3×3 (t as a channel), GN, conv 65→64 3×3, GN; then GN and FC 64→10.
    conv = lambda cin, k: cin * 64 * k * k + 64
    gn = 2 * 64
    downsampling = conv(1, 3) + gn + conv(64, 4) + gn + conv(64, 4)
    ode_function = gn + conv(65, 3) + gn + conv(65, 3) + gn
    assert vz.count_params(model) == downsampling + ode_function + gn + 64 * 10 + 10
    x = torch.randn(2, 1, 28, 28)
    model(x).logsumexp(1).sum().backward()
    assert model.ode.func.conv1.weight.grad.abs().sum() > 0


class _SmoothDynamics(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, t, h):
        return torch.tanh(self.conv(h)) * (1 + t)


def test_adjoint_gradients_equal_backpropagation_through_the_solver():
    torch.manual_seed(0)
    func = _SmoothDynamics().double()
    h0 = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    errors = []
    for steps in (4, 8):
        grads = []
        for adjoint in (False, True):
            out = ODEBlock(func, steps, "rk4", adjoint=adjoint)(h0)
            grads.append(torch.autograd.grad((out * weights).sum(), (h0, *func.parameters())))
        errors.append(max((a - d).abs().max().item() for d, a in zip(*grads)))
    assert errors[1] < 1e-3 and errors[1] < errors[0] / 8  # agree up to the RK4 error, O(dt⁴)
    model = vz.create_model("odenet_mnist", adjoint=True, steps=1)
    model(torch.randn(2, 1, 28, 28)).logsumexp(1).sum().backward()
    assert model.ode.func.conv2.weight.grad.abs().sum() > 0
