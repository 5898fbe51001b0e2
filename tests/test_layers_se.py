import torch

from visionzoo.layers.se import SqueezeExcite


def test_se_scales_each_channel_by_its_excitation():
    torch.manual_seed(0)
    se = SqueezeExcite(32, reduction=16)
    assert se.fc1.out_channels == 2  # C / r
    x = torch.randn(2, 32, 5, 5)
    z = x.mean((2, 3))
    s = torch.sigmoid(se.fc2.weight.view(32, 2) @ torch.relu(se.fc1.weight.view(2, 32) @ z.T + se.fc1.bias[:, None])
                      + se.fc2.bias[:, None]).T
    torch.testing.assert_close(se(x), x * s[:, :, None, None])
    assert ((s > 0) & (s < 1)).all()
