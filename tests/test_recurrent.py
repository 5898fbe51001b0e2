"""layers/recurrent.py: the cells against torch's and against the notes' equations written literally,
the Jordan cell by its definition, the fused and stepped networks against each other and nn.LSTM/GRU/RNN,
carried state (truncated BPTT) and the refusals."""
import pytest
import torch
from torch import nn

from visionzoo.core.errors import UsageError
from visionzoo.layers.recurrent import (
    ElmanCell,
    GRUCell,
    JordanCell,
    LSTMCell,
    RecurrentNetwork,
    detach_state,
    from_torch_cell_state,
    notes_weights,
    to_torch_cell_state,
    torch_twin_cell,
    torch_twin_network,
)

TOLERANCE = dict(rtol=0, atol=1e-10)


def _random_cell(cls, *args, seed=0):
    torch.manual_seed(seed)
    cell = cls(*args).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.normal_(0, 0.5)
    return cell


@pytest.mark.parametrize("cls", [LSTMCell, GRUCell, ElmanCell])
def test_cell_equals_torchs_over_several_steps(cls):
    cell = _random_cell(cls, 3, 5)
    twin = torch_twin_cell(cell)
    xs = torch.randn(6, 4, 3, dtype=torch.float64)
    ours = theirs = None
    for x in xs:
        out, ours = cell(x, ours)
        theirs = twin(x, theirs)
        expected = theirs[0] if isinstance(theirs, tuple) else theirs
        torch.testing.assert_close(out, expected, **TOLERANCE)
    # the state_dict mapping goes both ways
    fresh = cls(3, 5).double()
    fresh.load_state_dict(from_torch_cell_state(twin.state_dict()))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), cell.state_dict().values()))
    assert set(to_torch_cell_state(cell)) == set(twin.state_dict())


def _sigmoid(a):
    return 1 / (1 + torch.exp(-a))


def test_lstm_is_the_notes_equations():
    cell = _random_cell(LSTMCell, 3, 4)
    w = notes_weights(cell)
    h, c = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    x = torch.randn(2, 3, dtype=torch.float64)
    hx = torch.cat([h, x], 1)                        # [h_{t−1}, x_t]
    f = _sigmoid(hx @ w["f_W"].T + w["f_b"])
    i = _sigmoid(hx @ w["i_W"].T + w["i_b"])
    c_tilde = torch.tanh(hx @ w["C_W"].T + w["C_b"])
    c_new = f * c + i * c_tilde
    o = _sigmoid(hx @ w["o_W"].T + w["o_b"])
    out, (h_new, c_out) = cell(x, (h, c))
    torch.testing.assert_close(c_out, c_new, **TOLERANCE)
    torch.testing.assert_close(h_new, o * torch.tanh(c_new), **TOLERANCE)


def test_gru_is_the_papers_update_without_the_notes_sigma():
    cell = _random_cell(GRUCell, 3, 4)
    w = notes_weights(cell)
    h, x = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    z = _sigmoid(x @ w["W_z"].T + h @ w["U_z"].T + w["b_z"])
    r = _sigmoid(x @ w["W_r"].T + h @ w["U_r"].T + w["b_r"])
    candidate = torch.tanh(x @ w["W_c"].T + w["b_c_input"] + r * (h @ w["U_c"].T + w["b_c_recurrent"]))
    out, _ = cell(x, h)
    torch.testing.assert_close(out, (1 - z) * h + z * candidate, **TOLERANCE)
    # z = 1 keeps nothing of h_{t−1}: the candidate itself, which the notes' σ would squash again
    assert not torch.allclose(out, _sigmoid(z * candidate + (1 - z) * h))


def test_jordan_carries_the_output_and_reduces_to_elman():
    jordan = _random_cell(JordanCell, 3, 4)
    jordan.output_activation = "identity"
    with torch.no_grad():
        jordan.weight_hy.copy_(torch.eye(4))
        jordan.bias_y.zero_()
    elman = ElmanCell(3, 4).double()
    elman.load_state_dict({k: v for k, v in jordan.state_dict().items() if k in elman.state_dict()})
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    sj = se = None
    for x in xs:
        yj, sj = jordan(x, sj)
        ye, se = elman(x, se)
        torch.testing.assert_close(yj, ye, **TOLERANCE)
    # with another V the next hidden layer sees V h, not h: the state is the output
    jordan = _random_cell(JordanCell, 3, 4, seed=1)
    y1, state = jordan(xs[0])
    h2 = torch.tanh(jordan.project_input(xs[1]) + state @ jordan.weight_hh.T + jordan.bias_hh)
    y2, _ = jordan(xs[1], state)
    torch.testing.assert_close(y2, torch.tanh(h2 @ jordan.weight_hy.T + jordan.bias_y), **TOLERANCE)
    torch.testing.assert_close(state, y1, **TOLERANCE)


@pytest.mark.parametrize("kind", ["lstm", "gru", "elman"])
def test_fused_equals_stepped_and_torch_in_outputs_and_gradients(kind):
    torch.manual_seed(0)
    network = RecurrentNetwork(kind, 3, 5, num_layers=2, bidirectional=True).double()
    twin = torch_twin_network(network)
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    first, carried = network(x[:, :3])
    carried = detach_state(carried)
    results = []
    for fused in (True, False):
        network.fused = fused
        network.zero_grad()
        out, state = network(x[:, 3:], carried)
        h = state[0] if kind == "lstm" else state
        (out.square().sum() + h.sin().sum()).backward()
        results.append((out.detach(), h.detach(), [p.grad.clone() for p in network.parameters()]))
    (out_a, h_a, g_a), (out_b, h_b, g_b) = results
    torch.testing.assert_close(out_a, out_b, **TOLERANCE)
    torch.testing.assert_close(h_a, h_b, **TOLERANCE)
    for a, b in zip(g_a, g_b):
        torch.testing.assert_close(a, b, **TOLERANCE)
    expected, _ = twin(x[:, 3:], carried)
    torch.testing.assert_close(out_a, expected, **TOLERANCE)


def test_carried_state_continues_the_sequence():
    torch.manual_seed(0)
    for fused in (True, False):
        network = RecurrentNetwork("lstm", 2, 3, num_layers=2, fused=fused).double()
        x = torch.randn(3, 8, 2, dtype=torch.float64)
        whole, _ = network(x)
        first, state = network(x[:, :5])
        second, _ = network(x[:, 5:], detach_state(state))
        torch.testing.assert_close(torch.cat([first, second], 1), whole, **TOLERANCE)


def test_time_major_input_and_dropout_between_layers():
    torch.manual_seed(0)
    network = RecurrentNetwork("gru", 2, 3, num_layers=2, dropout=0.5, batch_first=False).double().eval()
    x = torch.randn(7, 4, 2, dtype=torch.float64)
    out, _ = network(x)
    assert out.shape == (7, 4, 3)
    network.batch_first = True
    torch.testing.assert_close(network(x.transpose(0, 1))[0].transpose(0, 1), out, **TOLERANCE)
    network.train()
    for fused in (True, False):
        network.fused = fused
        torch.manual_seed(1)
        noisy = network(x.transpose(0, 1))[0].transpose(0, 1)
        assert not torch.allclose(noisy, out)   # dropout acts in training, between the layers
        assert (noisy != 0).all()                # and not on the top layer's output (no zeroed units)
    single = RecurrentNetwork("gru", 2, 3, num_layers=1, dropout=0.5).double()
    for fused in (True, False):   # one layer: nothing between layers, so training gives eval's output
        single.fused = fused
        torch.testing.assert_close(single.train()(x)[0], single.eval()(x)[0], **TOLERANCE)


def test_a_jordan_network_runs_stepped_and_refuses_fused():
    network = RecurrentNetwork("jordan", 2, 3, num_layers=2)
    assert not network.runs_fused
    out, state = network(torch.randn(2, 4, 2))
    assert out.shape == (2, 4, 3) and state.shape == (2, 2, 3)
    with pytest.raises(UsageError, match="no fused jordan"):
        RecurrentNetwork("jordan", 2, 3, fused=True)


def test_bad_arguments_are_refused_in_one_line():
    for kwargs, message in [({"cell": "tree"}, "unknown cell"), ({"num_layers": 0}, "num_layers"),
                            ({"dropout": 1.0}, "dropout")]:
        with pytest.raises(UsageError, match=message):
            RecurrentNetwork(**{"input_size": 2, "hidden_size": 3, **kwargs})
    with pytest.raises(UsageError, match="batch, time, features"):
        RecurrentNetwork("lstm", 2, 3)(torch.randn(4, 2))
    assert isinstance(torch_twin_network(RecurrentNetwork("elman", 2, 3, nonlinearity="relu")), nn.RNN)

