"""The translation and sampling experiments (experiments/translation.py): their measures, and each one
run at smoke budget through `visionzoo reproduce`'s runner."""
from __future__ import annotations

import math

import pytest
import torch

from visionzoo.experiments import translation as experiments
from visionzoo.metrics.bleu import bleu
from visionzoo.models.language import lstm_lm


def test_toy_pairs_translate_word_by_word_within_the_length_bounds():
    pairs = experiments.toy_pairs(50, 3, 9, seed=1)
    dictionary = dict(zip(experiments.SOURCE_WORDS, experiments.TARGET_WORDS))
    assert len(set(experiments.TARGET_WORDS)) == len(experiments.SOURCE_WORDS) == len(experiments.TARGET_WORDS)
    for source, target in pairs:
        assert 3 <= len(source.split()) <= 9
        assert target.split() == [dictionary[word] for word in source.split()]
    assert experiments.toy_pairs(50, 3, 9, seed=1) == pairs
    assert experiments.toy_pairs(50, 3, 9, seed=2) != pairs


def test_sentence_statistics_sum_to_the_corpus_bleu():
    references = ["the cat sat on the mat", "a b c d e f", "one two three four five"]
    hypotheses = ["the cat sat on a mat", "a b c d", "five four three two one"]
    stats = experiments.sentence_statistics(hypotheses, references)
    assert stats.shape == (3, 10)
    assert experiments._bleu_of(stats.sum(0)) == pytest.approx(bleu(hypotheses, references), abs=1e-9)


def test_paired_bootstrap_sees_a_clear_winner_and_no_difference_between_equals():
    references = [" ".join(f"w{i + j}" for j in range(6)) for i in range(40)]
    garbled = [" ".join(reversed(r.split())) for r in references]
    boot = experiments.paired_bootstrap(references, garbled, references, seed=0, samples=200)
    assert boot == {"first_better": 1.0, "second_better": 0.0, "samples": 200}
    same = experiments.paired_bootstrap(garbled, garbled, references, seed=0, samples=200)
    assert same["first_better"] == same["second_better"] == 0.0
    assert not experiments._significant(same) and experiments._significant(boot)


def test_distinct_ngram_share_and_known_word_share():
    assert experiments.distinct_ngram_share(["abcab"], n=2) == pytest.approx(3 / 4)   # ab bc ca ab
    assert experiments.distinct_ngram_share(["abcdefgh"] * 4, n=5) == pytest.approx(1 / 4)
    assert experiments.distinct_ngram_share(["abc"], n=5) == 0.0
    share, counted = experiments.known_word_share(["The lord said unto", "xq and zzq"], {"the", "lord", "and"})
    assert counted == 5 and share == pytest.approx(3 / 5)   # "unto" and "zzq" are last words, left out


def test_sample_statistics_match_the_networks_probabilities():
    torch.manual_seed(0)
    model = lstm_lm(num_classes=7, hidden_size=8).eval()
    prompt, drawn = torch.tensor([1, 2, 3]), torch.tensor([4, 0, 6, 5])
    entropy, bits = experiments.sample_statistics(model, prompt, drawn, bias=0.0)
    with torch.no_grad():
        logits = model(torch.cat([prompt, drawn])[None])[0][0].double()
    log_p = torch.log_softmax(logits, -1)
    expected_bits = -sum(log_p[2 + i, token].item() for i, token in enumerate(drawn.tolist())) / 4 / math.log(2)
    expected_entropy = -(log_p[2:6].exp() * log_p[2:6]).sum(-1).mean().item() / math.log(2)
    assert bits == pytest.approx(expected_bits, rel=1e-6)
    assert entropy == pytest.approx(expected_entropy, rel=1e-6)
    sharper, same_bits = experiments.sample_statistics(model, prompt, drawn, bias=10.0)
    assert sharper < entropy and same_bits == pytest.approx(bits, rel=1e-9)   # bits are the unbiased network's
