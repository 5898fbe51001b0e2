"""`visionzoo models` and `visionzoo info`: the zoo table, verification, per-layer costs."""
import json

import pytest

from visionzoo.cli.main import main
from visionzoo.core.profile import count_macs, count_params, layer_table
from visionzoo.registry import create_model, parse_figure, verify_card

from conftest import assert_one_line_exit_2, cli_here


@pytest.mark.slow  # every card measured: 32 s on 2 cores
def test_models_verify_passes_for_a_pattern(capsys):
    # every card is verified one by one in test_zoo.test_card_matches_paper; here the command's path
    assert main(["models", "resnet1*", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "resnet152" in out and "match their papers" in out


def test_models_json_and_pattern(capsys):
    assert main(["models", "lenet*", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in cards] == ["lenet", "lenet300_100", "lenet5"]
    assert cards[2]["params"] == 60_000 and cards[2]["paper_params"] == 60_000
    assert_one_line_exit_2(cli_here("models", "nothing*"), "no model matches 'nothing*'")


def test_models_task_filters_the_table_and_the_json(capsys):
    assert main(["models", "lenet*", "--task", "classification", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in cards] == ["lenet", "lenet300_100", "lenet5"]
    assert {c["task"] for c in cards} == {"classification"}
    assert_one_line_exit_2(cli_here("models", "lenet*", "--task", "cloze"), "no cloze model matches 'lenet*'")
    assert_one_line_exit_2(cli_here("models", "--task", "colouring"), "invalid choice: 'colouring'")


def test_models_table_has_a_match_column(capsys):
    assert main(["models", "lenet5"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[-1] == "match" and row.split()[-1] == "ok"


def test_debug_after_the_command_shows_the_traceback_and_keeps_the_exit_status(capsys):
    assert main(["models", "nothing*", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: no model matches")


def test_verify_flags_undocumented_mismatch():
    card = {"params": 1_200_000, "macs": 10, "paper_params": "1.0M", "paper_macs": None,
            "mismatch_reason": None}
    assert verify_card(card)[0] is False
    assert verify_card({**card, "mismatch_reason": "explained"})[0] is True
    assert verify_card({**card, "params": 1_040_000})[0] is True   # within the printed rounding
    assert parse_figure("1.7M") == (1.7e6, 0.05e6) and parse_figure(60_000) == (60_000.0, 0.0)


def test_info_layer_table_sums_to_the_totals(capsys):
    assert main(["info", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "features" in out and "60,000" in out
    model = create_model("resnet18")
    rows = layer_table(model, (3, 224, 224), depth=1)
    assert sum(r["params"] for r in rows) == count_params(model)
    assert sum(r["macs"] for r in rows) == count_macs(model, (3, 224, 224))
    assert next(r for r in rows if r["layer"] == "layer4")["output"] == [512, 7, 7]


@pytest.mark.parametrize("name", ["dcgan", "stylegan_small", "lstm_lm"])
def test_info_of_a_network_of_another_task_totals_its_card(name, capsys):
    """A generator's input is z and a language model's tokens: info builds and measures what the card does."""
    assert main(["models", name, "--json", "--quiet"]) == 0
    card = json.loads(capsys.readouterr().out)[0]
    assert main(["info", name]) == 0
    params, macs = capsys.readouterr().out.strip().splitlines()[-1].split()[1:]
    assert (int(params.replace(",", "")), int(macs.replace(",", ""))) == (card["params"], card["macs"])


def test_bench_refuses_a_network_that_is_not_a_classifier_in_one_line():
    assert_one_line_exit_2(cli_here("bench", "dcgan", "--repeats", "1"), "dcgan is a generative network")


def test_lenet5_follows_the_paper():
    model = create_model("lenet5")
    c3 = model.features[4]
    # Table I: 6 maps × 3 inputs, 9 maps × 4 inputs, 1 map × 6 inputs; 1,516 parameters.
    assert sum(p.numel() for p in c3.parameters()) == 1516
    # Sec. II-B's layers, weights × output positions: C1 6·28²·25, C3 (6·3 + 9·4 + 1·6)·25 over 10²,
    # C5 120·16·25, F6 84·120, the RBF output 10·84 (subsampling's one coefficient per map is no MAC).
    c1, c3, c5, f6, rbf = 6 * 28 * 28 * 25, (6 * 3 + 9 * 4 + 6) * 25 * 10 * 10, 120 * 16 * 25, 84 * 120, 10 * 84
    assert count_macs(model, (1, 32, 32)) == c1 + c3 + c5 + f6 + rbf
    assert model(__import__("torch").zeros(2, 1, 28, 28)).shape == (2, 10)
