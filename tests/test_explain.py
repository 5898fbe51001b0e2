"""The explanation toolkit: each method checked by its defining property, then end to end via the CLI."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionzoo as vz
from visionzoo.explain.attribution import class_activation_map, grad_cam, guided_backprop, guided_grad_cam, saliency
from visionzoo.explain.faithfulness import _blurred, area_under, causal_curve
from visionzoo.explain.hooks import guided_relus
from visionzoo.explain.neighbours import embed, embed_batches, nearest
from visionzoo.explain.occlusion import occlusion
from visionzoo.explain.patches import crop_to_field, top_activations
from visionzoo.explain.receptive import Field, trace_receptive_fields
from visionzoo.models.base import ImageClassifier

from conftest import assert_one_line_exit_2, cli_here


def fields(model, size=(1, 32, 32)):
    return {row.name: row.field for row in trace_receptive_fields(model, size) if row.geometry}


# ---- receptive fields ----------------------------------------------------------------------------
def conv(k=3, s=1, p=1, d=1):
    return nn.Conv2d(1, 1, k, s, p, d)


def test_stacked_3x3_convolutions_see_5x5_and_7x7():
    # Seed 003 (VGG): "two 3×3 convolutions achieve the receptive field of one 5×5 (check this claim!)".
    net = nn.Sequential(conv(), nn.ReLU(inplace=True), conv(), nn.ReLU(), conv())
    got = fields(net)
    assert [got[n].size for n in ("0", "2", "4")] == [(3, 3), (5, 5), (7, 7)]
    assert all(got[n].jump == (1, 1) and got[n].start == (0.5, 0.5) for n in got)


def test_strides_dilation_and_pooling_by_hand():
    # conv 3/s2/p0: r 3, j 2, first centre 1.5; conv 3/s1/p0 on it: r 3 + 2·2 = 7, centre 1.5 + 1·2.
    got = fields(nn.Sequential(conv(s=2, p=0), conv(p=0)))
    assert (got["0"].size, got["0"].jump, got["0"].start) == ((3, 3), (2, 2), (1.5, 1.5))
    assert (got["1"].size, got["1"].jump, got["1"].start) == ((7, 7), (2, 2), (3.5, 3.5))
    # dilation 2: k_eff = 5, then 5 + 2·2·1 = 9; padding 2 keeps the first centre on pixel 0.
    got = fields(nn.Sequential(conv(d=2, p=2), conv(d=2, p=2)))
    assert (got["0"].size, got["1"].size, got["1"].start) == ((5, 5), (9, 9), (0.5, 0.5))
    # conv 3 → max-pool 2/2 (r 4, j 2) → conv 3 (r 4 + 2·2 = 8) → avg-pool 3/2/p1 (8 + 2·2 = 12, j 4).
    got = fields(nn.Sequential(conv(), nn.MaxPool2d(2), conv(), nn.AvgPool2d(3, 2, 1)))
    assert [got[n].size[0] for n in "0123"] == [3, 4, 8, 12]
    assert [got[n].jump[0] for n in "0123"] == [1, 2, 2, 4]
    # a non-square kernel: each axis on its own
    got = fields(nn.Sequential(nn.Conv2d(1, 1, (1, 5), padding=(0, 2)), conv()))
    assert got["1"].size == (3, 7)


@pytest.mark.parametrize("layers", [
    [conv(s=2, p=0), conv(p=0), nn.AvgPool2d(2), conv(d=2, p=2)],
    [conv(k=5, s=1, p=2), nn.AvgPool2d(3, 2, 1), conv(k=3, s=2, p=1, d=2)],
])
def test_field_is_exactly_where_the_gradient_reaches(layers):
    # With positive weights and average pooling, the centre unit's input gradient is non-zero on its
    # receptive field and nowhere else: the formula, checked against autograd. (The dilations are
    # chosen so that their taps leave no holes in the field.)
    net = nn.Sequential(*layers)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.constant_(module.weight, 1.0)
    x = torch.zeros(1, 1, 48, 48, requires_grad=True)
    out = net(x)
    row, col = out.shape[-2] // 2, out.shape[-1] // 2
    out[0, 0, row, col].backward()
    seen = x.grad[0, 0] != 0
    top, left, bottom, right = fields(net, (1, 48, 48))[str(len(layers) - 1)].box(row, col)
    expected = torch.zeros_like(seen)
    expected[int(top):int(bottom), int(left):int(right)] = True
    assert 0 <= top and bottom <= 48 and torch.equal(seen, expected)


class TwoBranches(nn.Module):
    """A 3×3 branch and a 3×3→3×3 branch summed (outside any module), then a 3×3 conv."""

    def __init__(self):
        super().__init__()
        self.short, self.long = conv(), nn.Sequential(conv(), conv())
        self.after = conv()

    def forward(self, x):
        return self.after(self.short(x) + self.long(x))


def test_branches_merge_by_the_largest_field():
    got = fields(TwoBranches())
    assert got["short"].size == (3, 3) and got["long.1"].size == (5, 5)
    assert got["after"].size == (7, 7)  # 5 (the larger branch) + 2


class FunctionalPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.second = conv(), conv()

    def forward(self, x):
        return self.second(F.avg_pool2d(self.first(x), 2))


def test_pooling_the_hooks_cannot_see_is_flagged_as_a_lower_bound():
    rows = {row.name: row for row in trace_receptive_fields(FunctionalPool(), (1, 16, 16))}
    assert rows["first"].exact and rows["first"].field.size == (3, 3)
    assert not rows["second"].exact and rows["second"].field.size[0] < 8  # the true field: 3 → 4 → 8


def test_vgg16_info_table_confirms_the_notes():
    result = cli_here("info", "vgg16", "--receptive-field", "--input-size", 3, 64, 64)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:]}
    r = {name: float(cols[-3]) for name, cols in rows.items()}
    assert (r["features.0"], r["features.2"]) == (3, 5)          # two 3×3 see 5×5
    assert (r["features.14"] - r["features.10"]) / 4 + 3 == 7     # three 3×3 at jump 4 see 7×7 of their input
    assert r["features.30"] == 212                                 # pool5 of VGG-16


def test_crop_to_field_pads_outside_the_image():
    image = torch.arange(1, 26, dtype=torch.uint8).view(1, 5, 5)
    field = Field((3.0, 3.0), (1.0, 1.0), (0.5, 0.5))
    corner = crop_to_field(image, field, 0, 0)
    assert corner.shape == (1, 3, 3) and corner[0, 0].tolist() == [0, 0, 0] and corner[0, 1, 1] == 1
    assert torch.equal(crop_to_field(image, field, 2, 2), image[:, 1:4, 1:4])


# ---- saliency methods ----------------------------------------------------------------------------
class GapNet(ImageClassifier):
    """conv → ReLU → conv → ReLU → global average pool → linear: the network CAM is defined for."""
    classifier_name = "fc"

    def __init__(self, relu_inplace=False, stride=1):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride, padding=1), nn.ReLU(inplace=relu_inplace),
                                      nn.Conv2d(8, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 4)

    def forward_features(self, x):
        return self.features(x)


def test_cam_equals_grad_cam_up_to_scale_on_gap_networks():
    # Selvaraju et al. Sec. 3.1: with GAP + linear, α_k = w_k / (h·w), so Grad-CAM = ReLU(CAM) / (h·w).
    torch.manual_seed(0)
    model, x = GapNet().double(), torch.randn(1, 3, 10, 12, dtype=torch.float64)
    for target in range(4):
        cam = class_activation_map(model, x, target)
        gradcam = grad_cam(model, x, target, layer="features.3")
        assert cam.shape == (10, 12) and (cam < 0).any()  # the identity is not trivially about ReLU
        assert torch.allclose(gradcam * 120, F.relu(cam), atol=1e-10)


def test_cam_refuses_a_head_that_is_not_gap_linear():
    model = GapNet()
    model.forward_head = lambda x, pre_logits=False: model.fc(x.amax((2, 3)))
    with pytest.raises(ValueError, match="global average pooling"):
        class_activation_map(model, torch.randn(1, 3, 8, 8), 0)


def test_saliency_of_a_linear_model_is_its_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 5 * 6, 4))
    x = torch.randn(1, 3, 5, 6)
    for target in range(4):
        weights = model[1].weight[target].detach().view(3, 5, 6)
        assert torch.equal(saliency(model, x, target), weights.abs().amax(0))


def test_occluding_a_region_that_is_already_grey_changes_nothing():
    torch.manual_seed(0)
    model = GapNet()
    x = torch.randn(1, 3, 16, 16)
    x[..., :8, :8] = 0.0  # the grey of the occluder (the mean colour, 0 after normalisation)
    base = F.softmax(model.eval()(x), 1)[0, 1]
    scores, sensitivity = occlusion(model, x, target=1, size=4, stride=4)
    assert scores.shape == (4, 4)
    assert torch.allclose(scores[:2, :2], base.expand(2, 2), atol=1e-6)
    assert (scores[2:, 2:] - base).abs().max() > 1e-4  # where there is content, covering it matters
    assert sensitivity[:4, :4].abs().max() < 1e-6


def test_occlusion_scores_and_sensitivity_follow_their_definitions_on_a_non_square_image():
    torch.manual_seed(0)
    model = GapNet().eval()
    x = torch.randn(1, 3, 12, 19)
    size, stride = 5, 3
    scores, sensitivity = occlusion(model, x, target=2, size=size, stride=stride, fill=0.5)
    rows = [0, 3, 6, 7]                 # every stride, then the far edge: 12 − 5
    cols = [0, 3, 6, 9, 12, 14]         # 19 − 5
    assert scores.shape == (len(rows), len(cols))
    probability = lambda image: F.softmax(model(image).detach(), 1)[0, 2]
    expected = torch.zeros(len(rows), len(cols))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            occluded = x.clone()
            occluded[..., r:r + size, c:c + size] = 0.5
            expected[i, j] = probability(occluded)
    assert torch.allclose(scores, expected, atol=1e-6)
    # a pixel's sensitivity: the unoccluded probability minus the mean score of the squares covering it
    for y, x_ in [(0, 0), (4, 10), (7, 18), (11, 13), (5, 2)]:
        covering = [expected[i, j] for i, r in enumerate(rows) for j, c in enumerate(cols)
                    if r <= y < r + size and c <= x_ < c + size]
        assert float(sensitivity[y, x_]) == pytest.approx(float(probability(x) - sum(covering) / len(covering)),
                                                          abs=1e-6)


def linear_net_with_relus(functional: bool):
    """x → Linear → ReLU (inplace module, or torch.nn.functional.relu) → Linear."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden, self.out = nn.Linear(12, 7), nn.Linear(7, 3)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            h = self.hidden(x.flatten(1))
            return self.out(F.relu(h) if functional else self.relu(h))
    return Net()


@pytest.mark.parametrize("functional", [False, True])
def test_guided_backprop_through_inplace_and_functional_relus(functional):
    # Springenberg et al. Sec. 3.4: the gradient passes a ReLU where its input AND the gradient are > 0.
    torch.manual_seed(1)
    model = linear_net_with_relus(functional)
    x = torch.randn(1, 1, 3, 4)
    hidden = model.hidden(x.flatten(1))[0]
    for target in range(3):
        incoming = model.out.weight[target]
        expected = (incoming.clamp(min=0) * (hidden > 0)) @ model.hidden.weight
        plain = (incoming * (hidden > 0)) @ model.hidden.weight
        got = guided_backprop(model, x, target).flatten()
        assert torch.allclose(got, expected.detach(), atol=1e-6)
        assert not torch.allclose(got, plain.detach(), atol=1e-6) or (incoming * (hidden > 0) >= 0).all()
    assert model.relu.inplace and F.relu.__module__ == "torch.nn.functional"


class TorchReLU(nn.ReLU):
    """An nn.ReLU module whose forward calls torch.relu, so the patched torch.nn.functional.relu never
    sees it: only guided_relus' backward hook on the module can apply the guided rule."""

    def forward(self, input):
        return torch.relu(input)


def test_guided_backprop_through_a_relu_module_that_bypasses_functional_relu():
    # Springenberg et al. Sec. 3.4 for nn.ReLU modules: a negative incoming gradient does not pass either.
    torch.manual_seed(1)
    model = linear_net_with_relus(functional=False)
    model.relu = TorchReLU()
    x = torch.randn(1, 1, 3, 4)
    hidden = model.hidden(x.flatten(1))[0]
    negative = 0
    for target in range(3):
        incoming = model.out.weight[target]
        negative += int((incoming * (hidden > 0) < 0).sum())
        expected = (incoming.clamp(min=0) * (hidden > 0)) @ model.hidden.weight
        torch.testing.assert_close(guided_backprop(model, x, target).flatten(), expected.detach(), rtol=0, atol=1e-6)
    assert negative > 0   # some gradient had to be dropped


def test_guided_grad_cam_is_guided_backprop_times_the_upsampled_grad_cam():
    # Selvaraju et al. Sec. 3.2: guided backprop ⊙ Grad-CAM, bilinearly upsampled (align_corners=False)
    # from the layer's (h, w) to the image's (H, W). The stride-2 layer makes the 5×6 → 9×11 resize
    # matter; the network's inplace ReLU is the case guided backprop must handle.
    torch.manual_seed(2)
    model, x = GapNet(relu_inplace=True, stride=2), torch.randn(1, 3, 9, 11)
    for target in range(4):
        cam = grad_cam(model, x, target)
        assert cam.shape == (5, 6) and cam.max() > cam.min()  # not flat: where it is upsampled to matters
        upsampled = F.interpolate(cam[None, None], size=(9, 11), mode="bilinear", align_corners=False)[0, 0]
        expected = guided_backprop(model, x, target) * upsampled
        result = guided_grad_cam(model, x, target)
        scale = expected.abs().max()  # small (a freshly initialised network), so compare relative to it
        assert result.shape == (3, 9, 11) and scale > 0
        assert torch.allclose(result, expected, rtol=1e-5, atol=1e-5 * scale)


def classifier_input(model, x):
    """What enters the network's last linear layer (a forward pre-hook on get_classifier())."""
    seen = []
    hook = lambda module, args: seen.append(args[0].clone())
    handle = model.get_classifier().register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[0]


def test_embedding_is_what_enters_the_classifier():
    # Krizhevsky et al. Sec. 6.1: the last hidden layer's vector. LeNet has its own head
    # (flatten → fc1 → ReLU → fc2); GapNet the default one, here with dropout that must be off.
    torch.manual_seed(0)
    lenet, x = vz.create_model("lenet").eval(), torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        features = embed(lenet, x)
    assert features.shape == (3, 500) and torch.equal(features, classifier_input(lenet, x))
    model, x = GapNet(), torch.randn(5, 3, 8, 8)
    model.head_drop = nn.Dropout(0.5)
    model.train()
    bank = embed_batches(model, [(0, None, x[:2], None), (2, None, x[2:], None)])
    assert model.training and model.head_drop.training
    assert bank.shape == (5, 6) and torch.allclose(bank, classifier_input(model.eval(), x), atol=1e-6)


def test_nearest_returns_the_k_closest_bank_rows_in_ascending_order():
    torch.manual_seed(0)
    queries, bank = torch.randn(5, 8), torch.randn(40, 8)
    queries[1] = bank[17]  # a query that is in the bank finds itself first
    brute = ((queries[:, None] - bank[None]) ** 2).sum(-1).sqrt()  # (5, 40), every pair
    distances, indices = nearest(queries, bank, k=6)
    assert distances.shape == indices.shape == (5, 6)
    assert torch.equal(indices, brute.argsort(1)[:, :6])
    assert torch.allclose(distances, brute.sort(1).values[:, :6], atol=1e-5)
    assert (distances.diff(dim=1) > 0).all() and indices[1, 0] == 17 and distances[1, 0] < 1e-5
    # asking for more neighbours than the bank holds gives the whole bank, nearest first
    distances, indices = nearest(queries, bank[:4], k=6)
    assert indices.shape == (5, 4) and torch.equal(indices, brute[:, :4].argsort(1))


def test_top_activations_are_each_images_maximum_strongest_first():
    # Zeiler & Fergus Fig. 2: per channel, the k images whose unit responds most, strongest first,
    # each at the location of its maximum; checked against all the layer's maps computed at once.
    torch.manual_seed(0)
    model, images = GapNet(stride=2), torch.randn(8, 3, 9, 12)
    batches = [(0, None, images[:3], None), (3, None, images[3:6], None), (6, None, images[6:], None)]
    with torch.no_grad():
        maps = model.features[:3](images)
    assert maps.shape == (8, 6, 5, 6)  # not square: rows and columns cannot be confused
    for k in (3, 20):
        best = top_activations(model, model.features[2], batches, channels=[4, 1], k=k)
        assert list(best) == [4, 1]
        for channel in (4, 1):
            values, positions = maps[:, channel].flatten(1).max(1)  # (8,): each image's maximum
            order = values.argsort(descending=True)[:k]
            got = best[channel]
            assert len(got) == min(k, 8)
            assert [(image, row, col) for _, image, row, col in got] == \
                [(int(i), int(positions[i]) // 6, int(positions[i]) % 6) for i in order]
            assert torch.allclose(torch.tensor([score for score, *_ in got]), values[order], atol=1e-6)
            assert all(maps[image, channel, row, col] == maps[image, channel].max()
                       for _, image, row, col in got)


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def test_every_method_releases_its_hooks_and_restores_the_model():
    torch.manual_seed(0)
    model, x = GapNet(relu_inplace=True), torch.randn(1, 3, 8, 8)
    model.train()
    relu_functional = F.relu
    saliency(model, x, 0)
    guided_backprop(model, x, 0)
    grad_cam(model, x, 0)
    guided_grad_cam(model, x, 0, layer="features.3")
    class_activation_map(model, x, 0)
    occlusion(model, x, 0, size=4)
    causal_curve(model, x, 0, torch.rand(8, 8), "deletion", steps=4)
    trace_receptive_fields(model, (3, 8, 8))
    top_activations(model, model.features[2], [(0, None, x, None)], channels=[0, 1], k=1)
    with pytest.raises(RuntimeError), guided_relus(model):
        raise RuntimeError("an error inside the context still restores everything")
    assert hook_count(model) == 0
    assert all(m.training for m in model.modules()) and all(p.grad is None for p in model.parameters())
    assert model.features[1].inplace and F.relu is relu_functional


def test_area_under_a_curve_is_the_trapezoid_over_the_fraction_changed():
    # Petsiuk et al. Sec. 4.1: the x axis runs over the fraction of pixels changed, 0 to 1 in steps of 1/steps.
    assert area_under(torch.ones(33)) == pytest.approx(1.0)
    assert area_under(torch.linspace(0, 1, 33)) == pytest.approx(0.5)
    assert area_under(torch.tensor([1.0, 0.0])) == pytest.approx(0.5)   # one step


def test_deletion_auc_of_a_perfect_map_is_lower_than_random():
    # Class 0 rests on a 5×5 patch of positive weights; deleting that patch first is what a perfect
    # map asks for, so its probability must fall faster than under a random order.
    torch.manual_seed(0)
    weights = torch.zeros(1, 16, 16)
    weights[0, 4:9, 6:11] = torch.rand(5, 5) + 0.5
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[0] = weights.flatten()
        model[1].bias.copy_(torch.tensor([-5.0, 0.0]))
    x = torch.rand(1, 1, 16, 16) + 0.5
    perfect = area_under(causal_curve(model, x, 0, weights[0] * x[0, 0], "deletion"))
    random = [area_under(causal_curve(model, x, 0, torch.rand(16, 16), "deletion")) for _ in range(3)]
    assert perfect < min(random) - 0.1


def test_insertion_runs_from_the_blurred_image_to_the_image():
    # RISE Sec. 4.1: insertion starts from a blurred copy (p(c | blurred) at 0 pixels), puts back the
    # most salient pixels first, and ends at p(c | x) with every pixel inserted.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))
    with torch.no_grad():
        model[1].weight.mul_(10.0)
    x, saliency_map = torch.randn(1, 3, 16, 16), torch.rand(16, 16)
    probability = lambda image: F.softmax(model(image), 1)[0, 2].detach()
    curve = causal_curve(model, x, 2, saliency_map, "insertion", steps=8)
    assert curve.shape == (9,)
    assert torch.allclose(curve[0], probability(_blurred(x)), atol=1e-6)
    assert torch.allclose(curve[-1], probability(x), atol=1e-6)
    # the start is neither the image nor deletion's grey, and it is a blur: a flat image stays flat,
    # white noise loses most of its variance
    assert (curve[0] - probability(x)).abs() > 0.05 and (curve[0] - probability(0 * x)).abs() > 0.05
    flat = torch.full((1, 3, 16, 16), 0.7)
    assert torch.allclose(_blurred(flat), flat) and _blurred(x).var() < 0.2 * x.var()
    # half way: the 128 most salient pixels are the image's, the rest the blurred copy's
    top = (saliency_map > saliency_map.flatten().sort().values[127]).float()
    assert top.sum() == 128
    assert torch.allclose(curve[4], probability(x * top + _blurred(x) * (1 - top)), atol=1e-6)


def test_insertion_auc_of_a_perfect_map_is_higher_than_random():
    # Class 0 rests on a 5×5 patch of checkerboard weights; the image follows the same checkerboard,
    # so its blurred copy (insertion's start) hides the class. Inserting the patch first, as a
    # perfect map asks, must raise its probability faster than a random order.
    torch.manual_seed(0)
    checker = ((torch.arange(16)[:, None] + torch.arange(16)) % 2) * 2.0 - 1.0
    weights = torch.zeros(16, 16)
    weights[4:9, 6:11] = checker[4:9, 6:11] * (torch.rand(5, 5) + 0.5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[0] = weights.flatten()
        model[1].bias.copy_(torch.tensor([-12.0, 0.0]))
    x = (checker * (torch.rand(16, 16) + 0.5))[None, None]
    perfect = causal_curve(model, x, 0, weights * x[0, 0], "insertion")
    assert perfect[0] < 0.01 and perfect[-1] > 0.99
    random = [area_under(causal_curve(model, x, 0, torch.rand(16, 16), "insertion")) for _ in range(3)]
    assert area_under(perfect) > max(random) + 0.2


def test_diagnostics_measure_dead_units_percentiles_and_gradient_norms():
    from types import SimpleNamespace

    from visionzoo.engine.diagnostics import TrainingDiagnostics
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    with torch.no_grad():
        model[0].bias[:3], model[0].bias[3:] = -100.0, 100.0  # three of eight units never fire
    trainer = SimpleNamespace(model=model, steps_per_epoch=1, out=None, resume_from=None, global_step=0,
                              scaler=torch.amp.GradScaler("cuda", enabled=False))
    diagnostics = TrainingDiagnostics(trainer)
    x = torch.randn(64, 4)
    model.train()(x).sum().backward()
    diagnostics.after_backward(trainer)
    model.eval()(x)  # evaluation passes are not recorded
    layers = diagnostics.layers
    assert layers["1"]["dead_fraction"] == {"step": [0], "value": [3 / 8]}
    expected = torch.quantile(model[0](x).detach().flatten(), torch.tensor([0.15, 0.5, 0.85]))
    got = [layers["0"]["percentiles"][f"p{p}"][0] for p in (15, 50, 85)]
    assert torch.allclose(torch.tensor(got), expected, atol=1e-5)
    norm = torch.cat([model[0].weight.grad.flatten(), model[0].bias.grad.flatten()]).norm()
    assert layers["0"]["grad_norm"]["value"] == [pytest.approx(float(norm), rel=1e-5)]


# ---- end to end ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("explain") / "run"
    result = cli_here("train", "--model", "lenet", "--data", "digits", "--image-size", 28, "--epochs", 1,
                      "--batch-size", 64, "--train-limit", 512, "--diagnostics", "--quiet", "--out", run)
    assert result.returncode == 0, result.stderr
    return run


def test_diagnostics_json_has_per_layer_entries(lenet_run):
    report = json.loads((lenet_run / "diagnostics.json").read_text())
    layers = report["layers"]
    assert report["percentiles"] == [15, 50, 85] and (lenet_run / "diagnostics.png").exists()
    for conv_name in ("features.0", "features.3", "fc2"):
        pct, grad = layers[conv_name]["percentiles"], layers[conv_name]["grad_norm"]
        assert len(pct["step"]) == len(grad["step"]) == 8  # 512 images / 64 per step, every step
        assert all(a <= b <= c for a, b, c in zip(pct["p15"], pct["p50"], pct["p85"]))
        assert all(g > 0 for g in grad["value"])
    for relu_name in ("features.1", "features.4", "fc1.1"):
        assert all(0 <= v <= 1 for v in layers[relu_name]["dead_fraction"]["value"])


def test_explain_cli_writes_pictures_and_index(lenet_run, tmp_path):
    out = tmp_path / "explain"
    methods = "filters,receptive-field,patches,occlusion,gradcam,guided,saliency,neighbours"
    result = cli_here("explain", lenet_run, "--method", methods, "--index", 3, "--metric",
                      "--limit", 200, "--json", "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    index = (out / "index.html").read_text()
    for name in report["files"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" or name == "index.html"
        assert name == "index.html" or f"src='{name}'" in index
    for method in ("occlusion", "gradcam", "guided", "guided-gradcam", "saliency", "random"):
        scores = report["metrics"][method]
        assert 0 <= scores["deletion_auc"] <= 1 and 0 <= scores["insertion_auc"] <= 1
    assert "deletion AUC" in index

    from PIL import Image
    image = tmp_path / "digit.png"
    Image.new("L", (40, 40), 0).save(image)
    result = cli_here("explain", lenet_run, "--method", "saliency", "--image", image, "--class", 2,
                      "--out", out)
    assert result.returncode == 0 and "digit.png" in result.stdout, result.stderr
    result = cli_here("explain", lenet_run, "--method", "cam", "--out", out)  # LeNet has no GAP head
    assert_one_line_exit_2(result, "gradcam")


def test_a_method_that_does_not_apply_is_skipped_and_the_others_run(lenet_run, tmp_path):
    import re
    out = tmp_path / "explain"
    result = cli_here("explain", lenet_run, "--method", "cam,saliency", "--json", "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "cam" in report["skipped"] and "saliency.png" in report["files"]
    assert "cam: skipped" in result.stderr
    index = (out / "index.html").read_text()
    assert "Skipped" in index and "global average pooling" in index
    for link in re.findall(r"(?:src|href)='([^']+)'", index):
        assert (out / link).is_file(), link


def test_a_constant_map_is_flagged_and_not_scored(tmp_path):
    from types import SimpleNamespace

    from visionzoo.cli.explain_cmd import _saliency_entry
    from visionzoo.explain.render import add_to_index
    session = SimpleNamespace(title=lambda method: f"{method} of x", sample=(torch.zeros(1, 8, 8, dtype=torch.uint8),),
                              out=tmp_path, args=SimpleNamespace(metric=True), scores={}, curves={})
    entry = _saliency_entry(session, "gradcam", torch.zeros(8, 8), "gradcam.png", "Grad-CAM")
    assert "CONSTANT MAP" in entry["caption"] and entry["metrics"] == {"constant": True}
    assert session.scores == {}                  # no areas computed for it
    add_to_index(tmp_path, [entry], "test")
    index = (tmp_path / "index.html").read_text()
    assert "constant map" in index and "gradcam" in index
