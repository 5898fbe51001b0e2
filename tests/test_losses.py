"""Training losses by hand: knowledge distillation (T²·KL at temperature T plus (1 − α)·CE), the
auxiliary-classifier weighting and networks with their own objective (classification_loss)."""
import pytest
import torch

from visionzoo.tasks.classification import classification_loss
from visionzoo.tasks.distillation import distillation_loss


@pytest.mark.parametrize("temperature", [1.0, 4.0, 20.0])
def test_soft_term_is_t_squared_kl_at_temperature_t(temperature):
    g = torch.Generator().manual_seed(0)
    student = torch.randn(6, 5, generator=g, requires_grad=True)
    teacher = torch.randn(6, 5, generator=g) * 3
    labels = torch.randint(0, 5, (6,), generator=g)
    loss = distillation_loss(student, teacher, labels, temperature=temperature, alpha=1.0)
    q_t = torch.softmax(teacher / temperature, 1)
    q_s = torch.softmax(student.detach() / temperature, 1)
    by_hand = temperature ** 2 * (q_t * (q_t.log() - q_s.log())).sum(1).mean()
    torch.testing.assert_close(loss, by_hand)
    loss.backward()
    # d(T²·KL)/dz_s = T·(q_s − q_t)/N: the T² factor keeps the gradient's scale independent of T
    torch.testing.assert_close(student.grad, temperature * (q_s - q_t) / 6)


def test_hard_term_has_weight_one_minus_alpha_and_teacher_gets_no_gradient():
    g = torch.Generator().manual_seed(1)
    student = torch.randn(4, 3, generator=g)
    teacher = torch.randn(4, 3, generator=g, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0])
    soft = distillation_loss(student, teacher, labels, temperature=2.0, alpha=1.0)
    mixed = distillation_loss(student, teacher, labels, temperature=2.0, alpha=0.3)
    ce = torch.nn.functional.cross_entropy(student, labels)
    torch.testing.assert_close(mixed, 0.3 * soft + 0.7 * ce)
    assert not mixed.requires_grad


def test_a_student_equal_to_the_teacher_has_zero_soft_loss():
    logits = torch.randn(3, 7, generator=torch.Generator().manual_seed(2))
    loss = distillation_loss(logits, logits.clone(), torch.zeros(3, dtype=torch.long), temperature=5.0, alpha=1.0)
    assert abs(loss.item()) < 1e-6


@pytest.mark.parametrize("soft", [False, True])
def test_auxiliary_heads_add_their_weighted_cross_entropy(soft):
    g = torch.Generator().manual_seed(3)
    logits, aux = torch.randn(4, 5, generator=g), [torch.randn(4, 5, generator=g) for _ in range(2)]
    labels = torch.tensor([0, 4, 2, 1])
    targets = torch.softmax(torch.randn(4, 5, generator=g), 1) if soft else labels   # mixup gives probabilities
    model = torch.nn.Module()
    model.aux_weight = 0.3
    loss, returned = classification_loss((logits, aux), targets, model, label_smoothing=0.1)
    ce = torch.nn.functional.cross_entropy
    expected = ce(logits, targets, label_smoothing=0.1) + 0.3 * sum(ce(a, targets, label_smoothing=0.1) for a in aux)
    torch.testing.assert_close(loss, expected)
    assert returned is logits


def test_a_network_with_its_own_objective_is_trained_on_it():
    class Capsules(torch.nn.Module):   # CapsNet's margin + reconstruction loss stands behind training_loss
        def training_loss(self, output, labels, label_smoothing):
            return output.sum() * 0 + 7.0, output

    output = torch.randn(2, 3)
    loss, logits = classification_loss(output, torch.tensor([0, 1]), Capsules(), 0.0)
    assert loss.item() == 7.0 and logits is output
