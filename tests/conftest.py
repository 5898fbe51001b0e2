import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def logits_of(output):
    """Training-mode forward of networks with auxiliary heads returns (logits, [aux, ...])."""
    return output[0] if isinstance(output, tuple) else output


@pytest.fixture
def fmnist_available():
    from visionzoo.data.datasets import find_fashion_mnist
    if find_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST not installed (make test installs it)")


def assert_twin_logits(name, twin, source, x, atol=1e-4):
    """Our network with the twin's converted weights gives the twin's logits (eval mode)."""
    import visionzoo as vz
    model = vz.create_model(name).eval()
    model.load_state_dict(vz.convert_state_dict(name, twin.state_dict(), source))
    with torch.no_grad():
        expected = twin.eval()(x)
        assert expected.std() > 1e-3  # logits that say something: not a degenerate comparison
        torch.testing.assert_close(model(x), expected, atol=atol, rtol=0)
