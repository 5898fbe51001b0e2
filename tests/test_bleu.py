"""metrics.bleu against sacrebleu's corpus_bleu (the reference implementation, a dev dependency)."""
from __future__ import annotations

import math
import random

import pytest

from visionzoo.core.errors import UsageError
from visionzoo.metrics.bleu import bleu, bleu_statistics, tokenize_13a

sacrebleu = pytest.importorskip("sacrebleu")

HYPOTHESES = [
    "And God said, Let there be light: and there was light.",
    "The 3.5 kg parcel costs $1,200.50 - or 12-15 euros (approx.).",
    "He said: \"It's 10:30 &amp; we're late!\" &lt;b&gt;",
    "In the beginning God created the heaven and the earth",
    "a b c d e f",
    "Y dijo Dios: Sea la luz; y fué la luz.",
    "x",
    "email me at someone@example.com / or call 555-1234 ...",
]
REFERENCES = [
    "And God said, Let there be light: and there was light.",
    "The parcel of 3.5 kg costs $1,200.50, or 12-15 euros approx.",
    "He said: \"It is 10:30 & we are late!\" <b>",
    "In the beginning God created the heavens and earth .",
    "a b c d g f e",
    "Y dijo Dios: Sea la luz: y fué la luz.",
    "y z",
    "Email me at someone@example.com or call 555 - 1234.",
]


def test_tokenize_13a_equals_sacrebleu_tokenizer():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    reference = Tokenizer13a()
    for line in HYPOTHESES + REFERENCES + ["a-b 1-2 x.y 3.4 5,6 a,b ~{}|`^_[]\\ end-\nnext"]:
        assert tokenize_13a(line) == reference(line.rstrip()).split()


def test_corpus_bleu_equals_sacrebleu_on_varied_sentences():
    expected = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score
    assert bleu(HYPOTHESES, REFERENCES) == pytest.approx(expected, abs=1e-9)
    assert 0 < expected < 100


def test_corpus_bleu_equals_sacrebleu_on_random_corpora_with_several_references():
    rng = random.Random(0)
    words = ["the", "LORD", "said", ",", "unto", "Moses", ".", "3", "3.5", "(", ")", "light", "y", "la", "luz", "-"]
    for trial in range(20):
        n = rng.randint(1, 12)
        def sentence():
            return " ".join(rng.choice(words) for _ in range(rng.randint(1, 14)))
        hypotheses = [sentence() for _ in range(n)]
        first, second = [sentence() for _ in range(n)], [sentence() for _ in range(n)]
        single = sacrebleu.corpus_bleu(hypotheses, [first]).score
        assert bleu(hypotheses, first) == pytest.approx(single, abs=1e-9), trial
        double = sacrebleu.corpus_bleu(hypotheses, [first, second]).score
        assert bleu(hypotheses, list(zip(first, second))) == pytest.approx(double, abs=1e-9), trial


def test_bleu_defining_properties():
    assert bleu(REFERENCES, REFERENCES) == pytest.approx(100.0)
    assert bleu(["completely unrelated words here"], ["nothing in common at all"]) == 0.0
    # a hypothesis shorter than its reference is penalised by exp(1 − r/c): same precisions, lower score
    stats = bleu_statistics(["a b c d"], ["a b c d e f g h"])
    assert stats["hypothesis_length"] == 4 and stats["reference_length"] == 8
    assert bleu(["a b c d"], ["a b c d e f g h"]) == pytest.approx(100 * math.exp(1 - 8 / 4))


def test_bleu_refuses_mismatched_input():
    with pytest.raises(UsageError, match="2 hypotheses but 1"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(UsageError, match="not a string"):
        bleu("a b", "a b")


def test_bleu_mismatch_message_transposes_sacrebleu_streams_correctly():
    """The refusal's advice, list(zip(*streams)), turns sacrebleu's reference streams into our layout."""
    streams = [REFERENCES, REFERENCES[::-1]]
    with pytest.raises(UsageError, match=r"list\(zip\(\*streams\)\)"):
        bleu(HYPOTHESES, streams)
    assert bleu(HYPOTHESES, list(zip(*streams))) == pytest.approx(sacrebleu.corpus_bleu(HYPOTHESES, streams).score)
