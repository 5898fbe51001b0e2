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
