"""Translation: parallel data and subword vocabulary, the recurrent models, decoding (beam search against
exhaustive search), and the task on the engine with `visionzoo eval` and `visionzoo translate`."""
from __future__ import annotations

import gettext
import itertools
import json
import math
import struct

import pytest
import torch

from visionzoo.core.errors import DataError, UsageError
from visionzoo.data.translation import (
    BOS,
    EOS,
    PAD,
    SubwordVocabulary,
    encode_pairs,
    read_mo,
    split_pairs,
    tsv_pairs,
    usable_message,
)
from visionzoo.models.decoding import beam_search, greedy_decode, sequence_log_prob
from visionzoo.models.seq2seq import encode_by_length, reverse_tokens
from visionzoo.registry import create_model

from conftest import assert_one_line_exit_2, cli_here

WORDS = ["the", "light", "day", "night", "god", "water", "earth", "good", "and", "was"]
SPANISH = {"the": "la", "light": "luz", "day": "día", "night": "noche", "god": "dios", "water": "agua",
           "earth": "tierra", "good": "buena", "and": "y", "was": "fue"}


def write_mo(path, messages: dict[str, str], order: str = "<") -> None:
    """A GNU .mo catalogue of `messages`, laid out as the format specifies (originals sorted)."""
    keys = sorted(messages)
    count, header = len(keys), 28
    originals, translations = header, header + 8 * len(keys)
    data = bytearray()
    start = translations + 8 * count
    tables = [[], []]
    for table, strings in ((0, keys), (1, [messages[k] for k in keys])):
        for text in strings:
            raw = text.encode("utf-8")
            tables[table].append((len(raw), start + len(data)))
            data += raw + b"\0"
    blob = struct.pack(f"{order}7I", 0x950412DE, 0, count, originals, translations, 0, 0)
    for table in tables:
        blob += b"".join(struct.pack(f"{order}2I", *entry) for entry in table)
    path.write_bytes(blob + bytes(data))


@pytest.mark.parametrize("order", ["<", ">"])
def test_read_mo_equals_pythons_gettext(tmp_path, order):
    messages = {"": "Content-Type: text/plain; charset=UTF-8\n", "Open file": "Ouvrir le fichier",
                "ctx\x04Save": "Enregistrer", "Éléphant": "Éléphant « ami »"}
    path = tmp_path / "test.mo"
    write_mo(path, messages, order)
    ours = read_mo(path)
    with path.open("rb") as handle:
        reference = gettext.GNUTranslations(handle)
    assert ours == messages
    assert all(reference.gettext(key) == value for key, value in ours.items() if key and "\x04" not in key)
    (tmp_path / "bad.mo").write_bytes(b"\x00" * 40)
    with pytest.raises(DataError, match="not a .mo catalogue"):
        read_mo(tmp_path / "bad.mo")


def test_format_strings_and_plurals_are_filtered():
    assert usable_message("Open file", "Ouvrir le fichier")
    for source in ("Cannot open %s", "from %.*s", "%1$s items", "%(name)s done", "Hello {name}", "Item {0}",
                   "Path ${HOME}", "line\nbreak", "one file\x00%d files"):
        assert not usable_message(source, "x"), source


def test_tsv_reads_pairs_and_names_a_bad_line(tmp_path):
    good = tmp_path / "good.tsv"
    good.write_text("hello\thola\n\n  good day \t buenos días\n", encoding="utf-8")
    assert tsv_pairs(good) == [("hello", "hola"), ("good day", "buenos días")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("hello\thola\nno tab here\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.tsv:2: expected"):
        tsv_pairs(bad)
    (tmp_path / "three.tsv").write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"three.tsv:1"):
        tsv_pairs(tmp_path / "three.tsv")


def test_split_is_fixed_disjoint_and_complete():
    pairs = [(f"s{i}", f"t{i}") for i in range(200)]
    first, second = split_pairs(pairs, "x"), split_pairs(list(pairs), "x")
    assert first == second
    assert len(first["test"]) == len(first["val"]) == 10
    assert sorted(first["train"] + first["val"] + first["test"]) == sorted(pairs)


def corpus(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Toy English→Spanish: word-by-word substitution of random phrases."""
    rng = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n):
        words = [WORDS[i] for i in torch.randint(len(WORDS), (int(torch.randint(2, 7, (1,), generator=rng)),),
                                                 generator=rng)]
        pairs.append((" ".join(words), " ".join(SPANISH[w] for w in words)))
    return pairs


def test_subword_vocabulary_is_deterministic_and_round_trips():
    texts = [side for pair in corpus(300) for side in pair]
    first, second = SubwordVocabulary.train(texts, 60), SubwordVocabulary.train(texts, 60)
    assert first.model == second.model
    again = SubwordVocabulary.from_json(json.loads(json.dumps(first.to_json())))
    for text in texts[:20]:
        assert again.decode(again.encode(text)) == text
    (source, target), = encode_pairs([("the light", "la luz")], first)
    assert source[-1] == EOS and target[0] == BOS and target[-1] == EOS and PAD not in source
    with pytest.raises(DataError, match="subword model is damaged"):
        SubwordVocabulary.from_json({"kind": "sentencepiece", "model": "bm90IGEgbW9kZWw="})


def test_reverse_tokens_keeps_padding_at_the_right():
    src = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    assert torch.equal(reverse_tokens(src), torch.tensor([[7, 6, 5, 0], [9, 8, 0, 0]]))


def test_encoding_by_length_equals_encoding_each_sentence_alone():
    torch.manual_seed(0)
    model = create_model("rnnsearch", num_classes=30, embedding=8, hidden_size=6, attention_size=5, maxout_size=4,
                         dropout=0.0).eval()
    src = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0], [11, 12, 13, 0], [14, 15, 0, 0]])
    embedded = model.src_embed(src)
    outputs, state = encode_by_length(model.encoder, embedded, (src != 0).sum(1))
    for i, length in enumerate((src != 0).sum(1).tolist()):
        alone, alone_state = model.encoder(embedded[i:i + 1, :length])
        assert torch.allclose(outputs[i, :length], alone[0], atol=1e-6)
        assert outputs[i, length:].eq(0).all()
        assert torch.allclose(state[:, i], alone_state[:, 0], atol=1e-6)


@pytest.mark.parametrize("name", ["seq2seq_lstm", "rnnsearch"])
def test_recurrent_models_step_by_step_equal_teacher_forcing(name):
    torch.manual_seed(1)
    model = create_model(name, num_classes=30, embedding=8, hidden_size=12, dropout=0.0).eval()
    src = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0]])
    tgt = torch.tensor([[2, 11, 12, 13], [2, 14, 15, 16]])
    with torch.no_grad():
        full = model(src, tgt)
        memory, cache, steps = model.encode(src), None, []
        for t in range(tgt.shape[1]):
            logits, cache = model.decode_step(memory, tgt[:, t:t + 1], cache)
            steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)


def test_rnnsearch_alignments_are_distributions_over_the_real_source_words():
    torch.manual_seed(2)
    model = create_model("rnnsearch", num_classes=30, embedding=8, hidden_size=12, dropout=0.0).eval()
    src = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0]])
    alignment = model.alignments(src, torch.tensor([[2, 11, 12], [2, 14, 15]]))
    assert alignment.shape == (2, 3, 5)
    assert torch.allclose(alignment.sum(-1), torch.ones(2, 3)) and alignment[1, :, 3:].eq(0).all()


def test_additive_attention_is_bahdanaus_alignment_model_written_out():
    """Bahdanau et al. Eq. 5–6 and A.1.2: e_ij = v_aᵀ tanh(W_a s_{i−1} + U_a h_j), α_ij = softmax over the
    real source words j, c_i = Σ_j α_ij h_j."""
    from visionzoo.layers.seq_attention import AdditiveAttention
    torch.manual_seed(0)
    attention = AdditiveAttention(query_size=3, annotation_size=4, attention_size=5)
    state, annotations = torch.randn(2, 3), torch.randn(2, 6, 4)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])      # the second sentence has 4 words
    context, alignment = attention(state, attention.project_keys(annotations), annotations, mask)
    for b, length in enumerate((6, 4)):
        energies = torch.stack([attention.v_a.weight[0] @ torch.tanh(attention.W_a.weight @ state[b]
                                                                     + attention.U_a.weight @ annotations[b, j]
                                                                     + attention.U_a.bias)
                                for j in range(length)])
        alpha = energies.softmax(0)
        torch.testing.assert_close(alignment[b, :length], alpha.detach())
        assert not alignment[b, length:].any()
        torch.testing.assert_close(context[b], (alpha[:, None] * annotations[b, :length]).sum(0).detach())


def test_reversing_the_source_is_the_same_network_on_reversed_input():
    torch.manual_seed(3)
    forward = create_model("seq2seq_lstm", num_classes=30, embedding=8, hidden_size=12, dropout=0.0,
                           reverse_source=False).eval()
    backward = create_model("seq2seq_lstm", num_classes=30, embedding=8, hidden_size=12, dropout=0.0).eval()
    backward.load_state_dict(forward.state_dict())
    src, tgt = torch.tensor([[5, 6, 7, 3]]), torch.tensor([[2, 11, 12]])
    with torch.no_grad():
        assert torch.allclose(backward(src, tgt), forward(torch.tensor([[3, 7, 6, 5]]), tgt), atol=1e-6)
        assert not torch.allclose(backward(src, tgt), forward(src, tgt))


def tiny_translator(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("transformer_small", num_classes=6, d_model=8, num_heads=2, num_encoder_layers=1,
                        num_decoder_layers=1, d_ff=16, dropout=0.0).eval()


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_with_a_full_beam_is_exhaustive_search(alpha):
    """Vocabulary of 6 (4 special ids and 2 words): every hypothesis of at most 2 tokens before </s>
    enumerated and scored log P(y|x) / |y|^α; a beam holding them all must find the best one, a
    narrower beam finds one no better."""
    model = tiny_translator()
    src = torch.tensor([[4, 5, 4, EOS]])
    limit = 3                                     # tokens, </s> included
    tokens = [t for t in range(6) if t != EOS]
    hypotheses = [list(h) for n in range(limit) for h in itertools.product(tokens, repeat=n)]
    scores = {tuple(h): sequence_log_prob(model, src, h, bos=BOS, eos=EOS) / (len(h) + 1) ** alpha
              for h in hypotheses}
    best = max(scores, key=scores.get)
    found, found_scores = beam_search(model, src, bos=BOS, eos=EOS, beam=len(hypotheses), alpha=alpha,
                                      max_len_a=0, max_len_b=limit, return_scores=True)
    assert tuple(found[0]) == best and found_scores[0] == pytest.approx(scores[best], abs=1e-5)
    for width in (1, 2, 3):
        narrow, narrow_scores = beam_search(model, src, bos=BOS, eos=EOS, beam=width, alpha=alpha, max_len_a=0,
                                            max_len_b=limit, return_scores=True)
        assert narrow_scores[0] == pytest.approx(scores[tuple(narrow[0])], abs=1e-5)
        assert narrow_scores[0] <= scores[best] + 1e-6


def test_beam_search_batches_sentences_independently_and_ensembles_average():
    model = tiny_translator(1)
    src = torch.tensor([[4, 5, 4, EOS], [5, EOS, PAD, PAD]])
    together = beam_search(model, src, bos=BOS, eos=EOS, beam=3, max_len_a=0, max_len_b=5)
    alone = [beam_search(model, src[i:i + 1, :int((src[i] != PAD).sum())], bos=BOS, eos=EOS, beam=3, max_len_a=0,
                         max_len_b=5)[0] for i in range(2)]
    assert together == alone
    assert beam_search([model, model], src, bos=BOS, eos=EOS, beam=3, max_len_a=0, max_len_b=5) == together


def _ensemble_next_log_probs(models, src, prefix: list[int]) -> list[float]:
    """log of the members' mean next-token distribution after `prefix`, by teacher forcing."""
    tgt = torch.tensor([[BOS, *prefix]])
    with torch.no_grad():
        probabilities = torch.stack([model(src, tgt)[0, -1].double().softmax(-1) for model in models]).mean(0)
    return probabilities.log().tolist()


def _reference_beam_search(models, src, beam: int, alpha: float, limit: int):
    """The module docstring's search, one sentence, written plainly: K live hypotheses, of the 2K best
    extensions those ending in </s> finish (scored log P / |y|^α), the K best others live on; stop when
    no live one can beat the best finished, its bound s / L^α."""
    live, finished = [(0.0, [])], []
    for step in range(limit):
        candidates = []
        for score, prefix in live:
            log_probs = _ensemble_next_log_probs(models, src, prefix)
            tokens = [EOS] if step + 1 >= limit else range(len(log_probs))
            candidates += [(score + log_probs[token], [*prefix, token]) for token in tokens]
        candidates.sort(key=lambda candidate: -candidate[0])
        live = []
        for score, hypothesis in candidates[:2 * beam]:
            if hypothesis[-1] == EOS:
                finished.append((score / len(hypothesis) ** alpha, hypothesis[:-1]))
            elif len(live) < beam:
                live.append((score, hypothesis))
        if not live or (finished and max(finished)[0] >= live[0][0] / limit ** alpha):
            break
    return max(finished)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("members", [1, 2])
def test_beam_search_of_every_width_is_the_docstrings_search_and_ensembles_average_probabilities(alpha, members):
    src = torch.tensor([[4, 5, 4, EOS]])
    limit = 5
    for seed in range(4):
        models = [tiny_translator(seed + 10 * m) for m in range(members)]
        for width in (1, 2, 3):
            found, scores = beam_search(models, src, bos=BOS, eos=EOS, beam=width, alpha=alpha, max_len_a=0,
                                        max_len_b=limit, return_scores=True)
            expected_score, expected = _reference_beam_search(models, src, width, alpha, limit)
            assert found[0] == expected and scores[0] == pytest.approx(expected_score, abs=1e-5), (seed, width)


def test_the_training_loss_sums_label_smoothed_cross_entropy_over_the_real_target_tokens_only():
    from visionzoo.tasks.translation import translation_loss
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    targets = torch.tensor([[3, 4, 5, EOS, PAD], [6, EOS, PAD, PAD, PAD]])
    smoothed, nll = translation_loss(logits, targets, 0.1)
    log_probs = logits.log_softmax(-1)[targets != PAD]                  # the 6 real positions
    wanted = -log_probs.gather(1, targets[targets != PAD][:, None]).squeeze(1)
    assert nll.item() == pytest.approx(wanted.sum().item(), rel=1e-6)
    # Szegedy et al.'s smoothing: (1 − ε)·(−log p_y) + ε·mean_k(−log p_k), PyTorch's form
    assert smoothed.item() == pytest.approx((0.9 * wanted - 0.1 * log_probs.mean(1)).sum().item(), rel=1e-6)


def test_a_training_steps_loss_is_per_real_target_token(tmp_path):
    from visionzoo.engine.trainer import TrainConfig, Trainer
    from visionzoo.tasks.translation import translation_loss
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in corpus(100)), encoding="utf-8")
    trainer = Trainer(TrainConfig(model="transformer_small", data=f"tsv:{data}", epochs=1, batch_size=4, vocab_size=40,
                                  label_smoothing=0.1, amp="off", quiet=True,
                                  model_args={"d_model": 16, "num_heads": 2, "num_encoder_layers": 1,
                                              "num_decoder_layers": 1, "d_ff": 32, "dropout": 0.0}))
    src = torch.tensor([[5, 6, 7, EOS], [8, EOS, PAD, PAD]])
    tgt = torch.tensor([[BOS, 9, 10, 11, EOS], [BOS, 12, EOS, PAD, PAD]])   # 6 real targets of 8 positions
    output = trainer.task.training_step((src, tgt), "train", torch.Generator())
    smoothed, _ = translation_loss(trainer.task.net(src, tgt[:, :-1]), tgt[:, 1:], 0.1)
    assert output.count == 6
    assert output.losses["loss"].item() == pytest.approx(smoothed.item() / 6, rel=1e-5)


def test_greedy_takes_the_most_probable_token_at_every_step():
    model = tiny_translator(2)
    src = torch.tensor([[4, 5, 5, EOS]])
    output = greedy_decode(model, src, bos=BOS, eos=EOS, max_len_a=0, max_len_b=6)[0]
    with torch.no_grad():
        logits = model(src, torch.tensor([[BOS, *output]]))[0]
    chosen = [*output, EOS] if len(output) < 5 else output
    assert logits.argmax(-1)[:len(chosen)].tolist() == chosen
    with pytest.raises(UsageError, match="--beam 0"):
        beam_search(model, src, bos=BOS, eos=EOS, beam=0)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from visionzoo.engine.trainer import TrainConfig, train
    root = tmp_path_factory.mktemp("translation")
    data = root / "pairs.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in corpus(300)), encoding="utf-8")
    cfg = TrainConfig(model="transformer_small", data=f"tsv:{data}", epochs=2, batch_size=16, vocab_size=40,
                      optimizer="adam", lr=3e-3, schedule="rsqrt", warmup_epochs=0.5, weight_decay=0.0,
                      amp="off", beam=2, quiet=True, out=str(root / "run"),
                      model_args={"d_model": 32, "num_heads": 2, "num_encoder_layers": 1, "num_decoder_layers": 1,
                                  "d_ff": 64, "dropout": 0.0})
    return root, cfg, train(cfg)


@pytest.mark.slow
def test_translation_run_trains_and_writes_its_results(trained_run):
    root, _, summary = trained_run
    run = root / "run"
    assert summary["task"] == "translation" and summary["test_n"] == 15      # 5 % of 300
    for key in ("test_bleu", "test_bleu_greedy", "test_loss", "test_bleu_by_length"):
        assert key in summary
    assert 0 <= summary["test_bleu"] <= 100 and summary["test_loss"] < math.log(40)
    for name in ("translations.txt", "bleu_by_length.png", "alignments.png", "curves.png", "model.safetensors"):
        assert (run / name).exists(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[1]["train_loss"] < records[0]["train_loss"] and "val_bleu" in records[0]


@pytest.mark.slow
def test_eval_and_translate_commands(trained_run, capsys):
    from visionzoo.cli.main import main
    root, cfg, summary = trained_run
    run = root / "run"
    assert main(["eval", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"bleu", "loss", "split", "n"} <= set(result) and result["split"] == "test" and result["n"] == 15
    assert result["bleu"] == pytest.approx(summary["test_bleu"], abs=1e-6)
    assert result["loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    assert main(["translate", str(run), "the light", "god was good", "--beam", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert main(["translate", str(run), "the day", "--json", "--beam", "0", "--ensemble", str(run)]) == 0
    assert len(json.loads(capsys.readouterr().out)["translations"]) == 1
    assert_one_line_exit_2(cli_here("translate", run, "   "), "non-empty")
    # bytes that are not UTF-8 reach argv (and stdin) as lone surrogates
    assert_one_line_exit_2(cli_here("translate", run, "the day", "the \udcff light"), "sentence 2", "not UTF-8 text")


@pytest.mark.slow   # a second run, interrupted mid-epoch and resumed
def test_an_interrupted_run_resumes_bit_identical(trained_run, tmp_path):
    import dataclasses

    from safetensors.torch import load_file

    from visionzoo.engine.trainer import Interrupted, TrainConfig, Trainer
    root, cfg, _ = trained_run
    stopped = Trainer(dataclasses.replace(cfg, out=str(tmp_path / "stopped")))
    original = stopped.task.training_step

    def interrupt_in_the_second_epoch(*args):
        if stopped.global_step == stopped.steps_per_epoch + 3:
            stopped.stop_requested = True
        return original(*args)

    stopped.task.training_step = interrupt_in_the_second_epoch
    with pytest.raises(Interrupted):
        stopped.run()
    Trainer(TrainConfig(quiet=True), resume=str(tmp_path / "stopped")).run()
    first = load_file(str(root / "run" / "model.safetensors"))
    again = load_file(str(tmp_path / "stopped" / "model.safetensors"))
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)


def test_held_out_splits_are_capped_at_their_own_sizes():
    """min(TEST_PAIRS = 1000, 5 %) test pairs and min(VAL_PAIRS = 500, 5 %) validation pairs: for 30 000 pairs
    (5 % = 1500) 1000 test, 500 val, the other 28 500 train."""
    pairs = [(f"s{i}", f"t{i}") for i in range(30000)]
    split = split_pairs(pairs, "x")
    assert (len(split["test"]), len(split["val"]), len(split["train"])) == (1000, 500, 28500)


def test_gettext_pairs_drop_contexts_headers_plurals_formats_and_repeats(tmp_path):
    """The module docstring's filter over catalogues in name order: a msgctxt prefix dropped, the header, plural
    entries and format strings left out, a repeated msgid's first translation kept."""
    from visionzoo.data.translation import gettext_pairs
    write_mo(tmp_path / "a.mo", {"": "Content-Type: text/plain; charset=UTF-8\n", "Open file": "Ouvrir le fichier",
                                 "menu\x04Save": "Enregistrer", "%d files": "%d fichiers",
                                 "one file\x00files": "un fichier\x00fichiers", "Quit": "Quitter"})
    write_mo(tmp_path / "b.mo", {"Open file": "Ouvrir un fichier", "Close": "Fermer"})
    assert gettext_pairs(tmp_path) == [("Open file", "Ouvrir le fichier"), ("Quit", "Quitter"), ("Save", "Enregistrer"),
                                       ("Close", "Fermer")]


def test_encoded_pairs_are_the_pieces_with_eos_and_the_target_also_with_bos():
    """A source is its pieces then </s> (no <s>); a target <s>, its pieces, </s>."""
    vocab = SubwordVocabulary.train([side for pair in corpus(300) for side in pair], 60)
    (source, target), = encode_pairs([("the light", "la luz")], vocab)
    assert source == [*vocab.encode("the light"), EOS]
    assert target == [BOS, *vocab.encode("la luz"), EOS]


def test_length_limits_are_the_floor_of_a_times_the_unpadded_length_plus_b():
    """⌊a·|x| + b⌋ tokens, |x| counting no padding, at least 1."""
    from visionzoo.models.decoding import length_limits
    src = torch.tensor([[5, 6, 7, PAD, PAD], [5, 6, 7, 8, 9]])
    assert length_limits(src, PAD, 1.5, 0.0).tolist() == [4, 7]        # 4.5 and 7.5 rounded down
    assert length_limits(src, PAD, 1.0, 2.0).tolist() == [5, 7]
    assert length_limits(src, PAD, 0.0, 0.5).tolist() == [1, 1]


class _CountingModel(torch.nn.Module):
    """A stand-in translator whose next token is always 4 + (the source's first token) mod 2, never </s>:
    every hypothesis runs to its sentence's length limit."""

    def encode(self, src):
        return {"first": src[:, 0]}

    def decode_step(self, memory, tokens, cache):
        logits = torch.zeros(len(tokens), 6)
        logits[torch.arange(len(tokens)), 4 + memory["first"] % 2] = 1.0
        return logits, cache


def test_greedy_decodes_a_batch_as_each_sentence_alone_within_its_own_length_limit():
    """Sentences of different lengths have different limits ⌊a·|x| + b⌋; in a batch each stops at its own."""
    from visionzoo.models.decoding import length_limits
    model = _CountingModel()
    src = torch.tensor([[4, 5, 4, 5, EOS], [5, EOS, PAD, PAD, PAD]])
    together = greedy_decode(model, src, bos=BOS, eos=EOS, max_len_a=1, max_len_b=1)
    limits = length_limits(src, PAD, 1, 1).tolist()
    for i, output in enumerate(together):
        alone = greedy_decode(model, src[i:i + 1, :int((src[i] != PAD).sum())], bos=BOS, eos=EOS, max_len_a=1,
                              max_len_b=1)[0]
        assert output == alone and len(output) == limits[i] - 1     # the limit counts the forced <eos>
        assert set(output) == {4 + int(src[i, 0]) % 2}
    assert len(together[0]) > len(together[1])


def test_greedy_and_beam_search_share_the_length_limit():
    """At most ⌊a·|x| + b⌋ tokens, <eos> included: with L = 4 and no <eos> ever predicted, three tokens either way."""
    model, src = _CountingModel(), torch.tensor([[4, 5, 4, 5, EOS]])
    greedy = greedy_decode(model, src, bos=BOS, eos=EOS, max_len_a=0, max_len_b=4)[0]
    beam = beam_search(model, src, bos=BOS, eos=EOS, beam=1, max_len_a=0, max_len_b=4)[0]
    assert greedy == beam == [4, 4, 4]


def test_self_attention_over_several_new_positions_after_a_cache_equals_reading_the_whole_sequence():
    """Incremental decoding (seq_attention.MultiHeadAttention with a cache): the new positions' keys and values
    follow the cached ones, so a causal mask with the cache's offset sees the same keys as the full sequence's."""
    from visionzoo.layers.seq_attention import MultiHeadAttention, causal_mask
    torch.manual_seed(0)
    attention = MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        whole, _ = attention(x, mask=causal_mask(5))
        cache = {}
        first, _ = attention(x[:, :3], mask=causal_mask(3), cache=cache)
        rest, weights = attention(x[:, 3:], mask=causal_mask(2, offset=3), cache=cache, need_weights=True)
    torch.testing.assert_close(torch.cat([first, rest], 1), whole)
    assert weights.shape == (2, 2, 2, 5) and not weights[..., 0, 4].any()     # position 3 does not see position 4


def test_rnnsearch_is_bahdanaus_equations_written_out():
    """Bahdanau et al. Sec. 3 and App. A, one sentence at a time, with torch's nn.GRU / nn.GRUCell holding the
    model's weights: annotations h_j = [h→_j; h←_j] of the bidirectional encoder over the unpadded source,
    s₀ = tanh(W_s h←₁), e_ij = v_aᵀ tanh(W_a s_{i−1} + U_a h_j), α_i = softmax_j, c_i = Σ_j α_ij h_j,
    s_i = GRU([E y_{i−1}; c_i], s_{i−1}), t_i,k = max(t̃_i,2k−1, t̃_i,2k) of t̃_i = U_o s_i + V_o E y_{i−1} + C_o c_i
    (maxout over consecutive pairs), logits W_o t_i."""
    from visionzoo.layers.recurrent import torch_twin_cell, torch_twin_network
    torch.manual_seed(4)
    model = create_model("rnnsearch", num_classes=30, embedding=8, hidden_size=6, attention_size=5, maxout_size=4,
                         dropout=0.0).double().eval()
    src = torch.tensor([[5, 6, 7, 8, EOS], [9, 10, EOS, PAD, PAD]])
    tgt = torch.tensor([[BOS, 11, 12, 13], [BOS, 14, 15, 16]])
    encoder, cell, attention = torch_twin_network(model.encoder), torch_twin_cell(model.cell), model.attention
    with torch.no_grad():
        logits = model(src, tgt)
        for b, length in enumerate((5, 3)):
            h = encoder(model.src_embed(src[b:b + 1, :length]))[0][0]            # (S, 2·6): [h→; h←]
            s = torch.tanh(model.init_state(h[0, 6:]))
            for i in range(tgt.shape[1]):
                y = model.tgt_embed(tgt[b, i])
                energies = torch.stack([attention.v_a.weight[0] @ torch.tanh(attention.W_a.weight @ s
                                                                             + attention.U_a(h[j]))
                                        for j in range(length)])
                context = energies.softmax(0) @ h
                s = cell(torch.cat([y, context])[None], s[None])[0]
                pre = model.U_o(s) + model.V_o.weight @ y + model.C_o.weight @ context
                torch.testing.assert_close(logits[b, i], model.generator(torch.maximum(pre[0::2], pre[1::2])))


def test_seq2seq_is_sutskevers_pair_of_deep_lstms_written_out():
    """Sutskever et al. Sec. 2–3.3, one sentence at a time, with torch's nn.LSTM holding the model's weights: the
    encoder reads the source backwards, unpadded; the decoder starts in the encoder's final (h, c) of every layer
    and reads <s> y₁ …; one linear layer gives each position's logits."""
    from visionzoo.layers.recurrent import torch_twin_network
    torch.manual_seed(5)
    model = create_model("seq2seq_lstm", num_classes=30, embedding=8, hidden_size=6, num_layers=2,
                         dropout=0.0).double().eval()
    src = torch.tensor([[5, 6, 7, 8, EOS], [9, 10, EOS, PAD, PAD]])
    tgt = torch.tensor([[BOS, 11, 12, 13], [BOS, 14, 15, 16]])
    encoder, decoder = torch_twin_network(model.encoder), torch_twin_network(model.decoder)
    with torch.no_grad():
        logits = model(src, tgt)
        for b, length in enumerate((5, 3)):
            _, final = encoder(model.src_embed(src[b:b + 1, :length].flip(1)))
            outputs, _ = decoder(model.tgt_embed(tgt[b:b + 1]), final)
            torch.testing.assert_close(logits[b], model.generator(outputs[0]))


class _FixedDistribution(torch.nn.Module):
    """A stand-in translator whose every next-token distribution is softmax(`logits`), whatever it reads; it keeps
    the target inputs it is given."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits, self.inputs = logits, []

    def forward(self, src, tgt_in):
        self.inputs.append(tgt_in)
        return self.logits.expand(*tgt_in.shape, -1)


def test_teacher_forced_loss_sums_minus_log_p_over_the_real_target_tokens():
    """The module docstring's recorded loss: the network reads <s> y₁ … y_{T−1} (teacher forcing) and is scored on
    y₁ … y_T </s>; padding and <s> are neither scored nor counted."""
    from visionzoo.tasks.translation import teacher_forced_loss
    logits = torch.tensor([0.0, 0.0, 0.0, 1.0, 2.0, -1.0, 0.5])
    model = _FixedDistribution(logits)
    pairs = [([5, EOS], [BOS, 4, 6, 5, EOS]), ([6, 6, 4, EOS], [BOS, 6, EOS])]
    nats, count = teacher_forced_loss(model, pairs, torch.device("cpu"), batch_size=2)
    log_p = logits.log_softmax(-1)
    scored = [4, 6, 5, EOS, 6, EOS]
    assert count == 6 and nats == pytest.approx(-sum(log_p[y].item() for y in scored), rel=1e-6)
    assert [tgt_in.tolist() for tgt_in in model.inputs] == [[[BOS, 4, 6, 5], [BOS, 6, EOS, PAD]]]


def test_length_sorted_batches_are_consecutive_runs_of_the_length_sorted_pairs():
    """Fewer pairs than a pool: the pairs sorted by (target, source) length are cut into full batches (the last
    partial one dropped), so the batches, put back in order, are consecutive runs of the sorted lengths."""
    from visionzoo.tasks.translation import length_sorted_batches
    drawn = torch.randint(1, 40, (30, 2), generator=torch.Generator().manual_seed(0)).tolist()
    lengths = [(t, s) for t, s in drawn]
    batches = length_sorted_batches(lengths, 4, torch.Generator().manual_seed(1))
    assert len(batches) == 7 and all(len(batch) == 4 for batch in batches)
    assert len({i for batch in batches for i in batch}) == 28
    runs = sorted(sorted(lengths[i] for i in batch) for batch in batches)
    flat = [pair for run in runs for pair in run]
    assert flat == sorted(flat)


class _CopyingModel(torch.nn.Module):
    """A stand-in translator that writes out its source token by token (the source's </s> ends the output): it
    puts probability `copy` on the source's next token and `eos` on </s>, the rest spread over the others."""

    def __init__(self, copy: float, eos: float = 0.0):
        super().__init__()
        self.copy, self.eos = copy, eos

    def encode(self, src):
        return {"src": src}

    def decode_step(self, memory, tokens, cache):
        src = memory["src"]
        step = torch.zeros(len(src), dtype=torch.long) if cache is None else cache["step"]
        vocab = 40
        probabilities = torch.full((len(src), vocab), (1 - self.copy - self.eos) / (vocab - 2))
        probabilities[:, EOS] = self.eos
        probabilities[torch.arange(len(src)), src.gather(1, step.clamp(max=src.shape[1] - 1)[:, None])[:, 0]] += \
            self.copy
        return probabilities.log(), {"step": step + 1}


@pytest.fixture(scope="module")
def vocab():
    return SubwordVocabulary.train([side for pair in corpus(300) for side in pair], 40)


SOURCES = ["the light and the day was good", "god", "the water and the earth and the night", "night was good"]


def test_translate_returns_each_sources_translation_in_the_input_order(vocab):
    """`translate` decodes the sentences sorted by length but hands back translation i for source i."""
    from visionzoo.tasks.translation import translate
    for beam in (0, 2):
        assert translate(_CopyingModel(0.9), vocab, SOURCES, beam=beam, alpha=1.0, device=torch.device("cpu"),
                         batch_size=2) == SOURCES


def test_translate_by_an_ensemble_averages_its_members_distributions(vocab):
    """The first member alone would end every sentence at once (</s> 0.6, the copy 0.4), the second copies (0.9);
    their mean puts 0.65 on the copy: the ensemble copies."""
    from visionzoo.tasks.translation import translate
    members = [_CopyingModel(0.4, eos=0.6), _CopyingModel(0.9)]
    cpu = torch.device("cpu")
    assert translate(members[:1], vocab, SOURCES, beam=0, alpha=1.0, device=cpu) == [""] * 4
    assert translate(members, vocab, SOURCES, beam=0, alpha=1.0, device=cpu) == SOURCES


def test_bleu_by_length_bins_the_sources_by_their_words():
    """LENGTH_BINS: [0, 10), [10, 20), … and [60, ∞), keyed "0-9", "10-19", …, "60+", in order, empty bins left out;
    each bin's BLEU is sacrebleu's corpus BLEU of its own sentences."""
    import sacrebleu

    from visionzoo.tasks.translation import bleu_by_length
    words = [9, 10, 19, 20, 60, 65]
    sources = [" ".join(["w"] * n) for n in words]
    references = [" ".join(WORDS[(i + k) % len(WORDS)] for k in range(6)) for i in range(6)]
    hypotheses = [reference if i % 2 else " ".join(reference.split()[::-1]) for i, reference in enumerate(references)]
    bins = bleu_by_length(sources, hypotheses, references)
    assert list(bins) == ["0-9", "10-19", "20-29", "60+"]
    assert [bins[key]["n"] for key in bins] == [1, 2, 1, 2]
    for key, members in zip(bins, ([0], [1, 2], [3], [4, 5])):
        expected = sacrebleu.corpus_bleu([hypotheses[i] for i in members], [[references[i] for i in members]]).score
        assert bins[key]["bleu"] == pytest.approx(expected, abs=1e-9), key
