"""models/language.py: Graves' deep LSTM LM against Eq. 1–3 written step by step, carried state, weight
noise, sampling with bias and temperature (the same knob), dynamic evaluation, the registry entries."""
import json

import pytest
import torch
import torch.nn.functional as F

import visionzoo as vz
from visionzoo.cli.main import main
from visionzoo.core.errors import UsageError
from visionzoo.models.language import dynamic_evaluate, next_token_probabilities, sample

TOLERANCE = dict(rtol=0, atol=1e-10)


def _model(name="lstm_lm", seed=0, **kwargs):
    torch.manual_seed(seed)
    return vz.create_model(name, num_classes=7, **{"hidden_size": 5, "num_layers": 3, **kwargs}).double()


def _graves_by_the_equations(model, tokens):
    """Eq. 1–3 one time step at a time: h^n_t from x_t, h^{n−1}_t and h^n_{t−1}; ŷ_t = b_y + Σ_n W_{h^n y} h^n_t."""
    x = F.one_hot(tokens, model.vocab_size).double()
    cells = [layer.cells[0] for layer in model.layers]
    states = [None] * len(cells)
    logits = []
    for t in range(tokens.shape[1]):
        below, hidden = None, []
        for n, cell in enumerate(cells):
            layer_input = x[:, t] if n == 0 else torch.cat([x[:, t], below], -1)
            below, states[n] = cell(layer_input, states[n])
            hidden.append(below)
        logits.append(model.head.bias + sum(h @ w.T for h, w in zip(hidden, model.head.weight.split(5, 1))))
    return torch.stack(logits, 1)


@pytest.mark.parametrize("name", ["lstm_lm", "gru_lm", "rnn_lm"])
def test_skip_connections_are_graves_equations(name):
    model = _model(name).eval()
    tokens = torch.randint(0, 7, (2, 6))
    logits, state = model(tokens)
    assert logits.shape == (2, 6, 7) and len(state) == 3
    torch.testing.assert_close(logits, _graves_by_the_equations(model, tokens), **TOLERANCE)


def test_without_skips_it_is_a_plain_stack_read_from_the_top():
    model = _model(skip=False)
    assert [layer.input_size for layer in model.layers] == [7, 5, 5] and model.head.in_features == 5
    assert [layer.input_size for layer in _model().layers] == [7, 12, 12]


def test_the_carried_state_continues_the_text():
    model = _model().eval()
    tokens = torch.randint(0, 7, (3, 10))
    whole, _ = model(tokens)
    first, state = model(tokens[:, :4])
    second, _ = model(tokens[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, **TOLERANCE)
    zeros = model.init_state(3)
    torch.testing.assert_close(model(tokens, zeros)[0], whole, **TOLERANCE)


def test_word_level_embedding_and_tied_weights():
    model = _model(embedding=4, skip=False, hidden_size=4, tie_weights=True)
    assert model.head.weight is model.embed.weight
    assert model(torch.randint(0, 7, (2, 3)))[0].shape == (2, 3, 7)
    with pytest.raises(UsageError, match="tie_weights"):
        _model(embedding=4, tie_weights=True)          # skips: the output reads 3·5 features


def test_weight_noise_is_drawn_once_per_call_in_training_only():
    noisy = _model(weight_noise=0.1)
    clean = _model()
    tokens = torch.randint(0, 7, (2, 5))
    noisy.eval()
    torch.testing.assert_close(noisy(tokens)[0], clean.eval()(tokens)[0], **TOLERANCE)
    noisy.train()
    torch.manual_seed(3)
    out, _ = noisy(tokens)
    torch.manual_seed(3)
    perturbed = {n: p + 0.1 * torch.randn_like(p) for n, p in clean.named_parameters()}
    with torch.no_grad():
        for name, p in clean.named_parameters():
            p.copy_(perturbed[name])
    torch.testing.assert_close(out, clean.eval()(tokens)[0], **TOLERANCE)
    out.sum().backward()                                # the gradient reaches the noiseless weights
    assert all(p.grad is not None for p in noisy.parameters())


def test_bias_and_temperature_are_one_knob():
    logits = torch.randn(9, dtype=torch.float64)
    for b in (0.5, 2.0):
        torch.testing.assert_close(next_token_probabilities(logits, bias=b), torch.softmax(logits * (1 + b), -1))
        torch.testing.assert_close(next_token_probabilities(logits, bias=b),
                                   next_token_probabilities(logits, temperature=1 / (1 + b)))
    model = _model()
    prompt = torch.tensor([1, 2, 3])
    biased = sample(model, prompt, 20, bias=1.5, generator=torch.Generator().manual_seed(0))
    cooled = sample(model, prompt, 20, temperature=1 / 2.5, generator=torch.Generator().manual_seed(0))
    assert biased.shape == (20,) and torch.equal(biased, cooled)
    assert model.training                               # sampling restores the mode it found


def test_a_large_bias_samples_the_most_probable_token():
    model = _model().eval()
    drawn = sample(model, torch.tensor([0]), 8, bias=1e6, generator=torch.Generator().manual_seed(1))
    tokens = torch.tensor([0])
    for _ in range(8):                                  # greedy decoding, recomputed from scratch
        tokens = torch.cat([tokens, model(tokens[None])[0][0, -1].argmax()[None]])
    assert torch.equal(drawn, tokens[1:])
    with pytest.raises(UsageError, match="bias"):
        sample(model, tokens, 2, bias=-1)
    with pytest.raises(UsageError, match="temperature"):
        sample(model, tokens, 2, temperature=0)


def test_dynamic_evaluation_scores_each_window_before_learning_from_it():
    model = _model(hidden_size=16, num_layers=1)
    text = torch.tensor([0, 1, 2, 3, 4] * 12)
    before = [p.clone() for p in model.parameters()]
    model.eval()
    logits, _ = model(text[None, :-1])
    static = float(F.cross_entropy(logits[0], text[1:]).detach())
    assert dynamic_evaluate(model, text, lr=0.0, bptt=7) == pytest.approx(static, rel=1e-9)
    adapted = dynamic_evaluate(model, text, lr=0.5, bptt=5)
    assert adapted < static - 0.1                       # it learns the repeating text while predicting it
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_cards_and_the_models_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("VISIONZOO_CACHE", str(tmp_path))
    names = vz.list_models(task="language")
    assert {"lstm_lm", "lstm_lm_graves", "gru_lm", "rnn_lm"} <= set(names)
    assert main(["models", "--task", "language", "--json"]) == 0
    cards = {card["name"]: card for card in json.loads(capsys.readouterr().out)}
    graves = cards["lstm_lm_graves"]
    # 7 layers of 700 cells on 205 symbols, Eq. 1–3: 4·700·(205 + 700) + 6·4·700·(205 + 2·700) weights,
    # 2·4·700 biases a layer (torch's pair), 3·700 peephole weights a layer, output 7·700·205 + 205
    weights = 4 * 700 * 905 + 6 * 4 * 700 * 1605 + 7 * 700 * 205
    assert graves["params"] == weights + 7 * (2 * 4 * 700 + 3 * 700) + 205 and graves["match"]
    assert graves["macs"] == weights           # per token; the diagonal peepholes multiply nothing
    with pytest.raises(UsageError, match="in_chans=1"):
        vz.create_model("lstm_lm", in_chans=3)
    with pytest.raises(UsageError, match="integer tokens"):
        vz.create_model("lstm_lm")(torch.zeros(1, 4))


def test_macs_of_the_fused_lstm_are_counted_on_the_cpu_as_on_meta():
    """On the CPU torch runs the LSTM through oneDNN (mkldnn_rnn_layer), counted by our formula."""
    from visionzoo.core.profile import count_macs
    kwargs = dict(num_classes=11, hidden_size=6, num_layers=2)
    with torch.device("meta"):
        on_meta = count_macs(vz.create_model("lstm_lm", **kwargs), (1, 9))
    on_cpu = count_macs(vz.create_model("lstm_lm", **kwargs), (1, 9))
    weights = 4 * 6 * (11 + 6) + 4 * 6 * (11 + 6 + 6) + 12 * 11
    assert on_cpu == on_meta == 9 * weights


def test_graves_peephole_cell_is_his_equations_7_to_11():
    model = _model(peephole=True, num_layers=1).eval()
    cell = model.layers[0].cells[0]
    assert not model.layers[0].runs_fused
    with pytest.raises(UsageError, match="peephole"):
        _model("gru_lm", peephole=True)
    x, h, c = torch.randn(2, 7, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64), torch.randn(
        2, 5, dtype=torch.float64)
    w_i, w_f, w_c, w_o = cell.weight_ih.split(5)
    u_i, u_f, u_c, u_o = cell.weight_hh.split(5)
    b_i, b_f, b_c, b_o = (cell.bias_ih + cell.bias_hh).split(5)
    i = torch.sigmoid(x @ w_i.T + h @ u_i.T + cell.weight_ci * c + b_i)
    f = torch.sigmoid(x @ w_f.T + h @ u_f.T + cell.weight_cf * c + b_f)
    c_new = f * c + i * torch.tanh(x @ w_c.T + h @ u_c.T + b_c)
    o = torch.sigmoid(x @ w_o.T + h @ u_o.T + cell.weight_co * c_new + b_o)
    out, (h_out, c_out) = cell(x, (h, c))
    torch.testing.assert_close(c_out, c_new, **TOLERANCE)
    torch.testing.assert_close(out, o * torch.tanh(c_new), **TOLERANCE)


def test_dropout_is_on_each_hidden_output_that_both_the_next_layer_and_the_output_layer_read():
    """The class docstring: in training, layer n's output h^n is dropped (inverted dropout, p = ½: each unit 0 or
    2·h) once, and that same dropped tensor is what layer n + 1 (after x) and the output layer read; in evaluation
    there is no dropout."""
    model = _model(dropout=0.5, num_layers=2, hidden_size=6)
    seen = {}

    def keep_input(name):
        def hook(module, args, output):
            seen[name] = args[0]
        return hook
    model.layers[1].register_forward_hook(keep_input("next"))
    model.head.register_forward_hook(keep_input("head"))
    tokens = torch.randint(0, 7, (4, 9), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)                                                # the dropout masks
    model(tokens)
    to_next, to_head = seen["next"][..., 7:], seen["head"][..., :6]      # h^1 as each reads it
    torch.testing.assert_close(to_next, to_head, **TOLERANCE)
    h1, _ = model.layers[0](F.one_hot(tokens, 7).double())
    kept = to_head != 0
    assert 0 < kept.float().mean() < 1
    torch.testing.assert_close(to_head[kept], 2 * h1[kept], **TOLERANCE)
    clean = _model(num_layers=2, hidden_size=6).eval()                 # the same weights, no dropout
    torch.testing.assert_close(model.eval()(tokens)[0], clean(tokens)[0], **TOLERANCE)


def test_sampling_continues_from_the_prompts_last_position():
    """With a large bias the draws are greedy: the first continues the whole prompt (its last position's
    logits), each next one the text so far, as recomputed from scratch."""
    model = _model(seed=1).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)                                   # sharper predictions that depend on the text read
    prompt = torch.tensor([3, 1, 4, 1, 5])
    after_each = model(prompt[None])[0][0].argmax(-1)
    assert after_each[0] != after_each[-1]              # the prompt's first and last positions predict differently
    drawn = sample(model, prompt, 6, bias=1e6, generator=torch.Generator().manual_seed(0))
    text = prompt
    for _ in range(6):
        text = torch.cat([text, model(text[None])[0][0, -1].argmax()[None]])
    assert torch.equal(drawn, text[5:])


def test_dynamic_evaluation_scores_without_dropout_or_weight_noise():
    """Graves Sec. 3.1: dynamic evaluation predicts with the network as in evaluation, even when handed one in
    training mode with dropout and weight noise; at lr = 0 it is the static evaluation-mode loss."""
    model = _model(hidden_size=8, num_layers=2, dropout=0.5, weight_noise=0.3)
    text = torch.randint(0, 7, (30,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, _ = model.eval()(text[None, :-1])
    static = float(F.cross_entropy(logits[0], text[1:]))
    model.train()
    assert dynamic_evaluate(model, text, lr=0.0, bptt=7) == pytest.approx(static, rel=1e-9)
    assert model.training
