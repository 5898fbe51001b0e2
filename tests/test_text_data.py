"""Text data for language models (data/text.py): vocabularies at the character and word level, the
contiguous splits, `text:PATH` errors, and (when installed) the `kjv` corpus."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visionzoo.core.errors import DataError, UsageError
from visionzoo.data.text import END_OF_LINE, UNKNOWN, Vocabulary, first_lines, load_text_data, split_text, word_tokens

TEXT = "In the beginning God created the heaven and the earth.\nAnd the earth was without form, and void.\n" * 20


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_character_vocabulary_round_trips_and_names_unknown_characters():
    vocab = Vocabulary.build("char", "héllo wörld\n")
    assert vocab.itos == sorted(set("héllo wörld\n"))
    encoded = vocab.encode("wörld héllo")
    assert vocab.decode(encoded) == "wörld héllo" and encoded.dtype.is_floating_point is False
    with pytest.raises(UsageError, match="'Z' 'q'"):
        vocab.encode("Zoo quiz")
    assert Vocabulary.from_json(vocab.to_json()).itos == vocab.itos


def test_word_vocabulary_keeps_frequent_words_and_marks_lines():
    assert word_tokens("Thou art, O LORD’s.\nAmen.") == ["Thou", "art", ",", "O", "LORD’s", ".", END_OF_LINE,
                                                        "Amen", ".", END_OF_LINE]
    assert word_tokens("a\n") == ["a", END_OF_LINE]
    vocab = Vocabulary.build("word", "the cat\nthe dog\nthe cat\n", min_count=2)
    assert vocab.itos == [UNKNOWN, END_OF_LINE, "cat", "the"]
    encoded = vocab.encode("the dog\n")
    assert encoded.tolist() == [vocab.stoi["the"], vocab.unk, vocab.stoi[END_OF_LINE]]
    assert vocab.decode(vocab.encode("the cat\nthe cat")) == "the cat\nthe cat\n"
    assert vocab.unknown("zebra") == []      # <unk> takes every unknown word


def test_a_damaged_vocabulary_is_refused():
    with pytest.raises(DataError, match="vocab.json"):
        Vocabulary.from_json({"level": "char", "symbols": "abc"})
    with pytest.raises(DataError, match="lists a symbol twice"):
        Vocabulary("char", ["a", "a"])


def test_splits_are_contiguous_and_cut_at_line_ends():
    parts = split_text(TEXT, 0.1, 0.1, "x")
    assert parts["train"] + parts["val"] + parts["test"] == TEXT
    assert all(part.endswith("\n") for part in parts.values())
    assert abs(len(parts["test"]) - 0.1 * len(TEXT)) < 60 and abs(len(parts["val"]) - 0.1 * len(TEXT)) < 120


def test_val_and_test_fractions_each_set_their_own_split():
    # Unequal fractions: train the first 60 %, val the next 10 %, test the last 30 % (each cut at a line end).
    text = "ab\n" * 1000
    parts = split_text(text, 0.1, 0.3, "x")
    assert parts["train"] + parts["val"] + parts["test"] == text
    sizes = {name: len(part) for name, part in parts.items()}
    assert abs(sizes["train"] - 1800) <= 3 and abs(sizes["val"] - 300) <= 6 and abs(sizes["test"] - 900) <= 3


def test_text_file_streams_vocabulary_and_counts(text_file):
    data = load_text_data(f"text:{text_file}", val_fraction=0.1, test_fraction=0.1)
    assert data.vocab.decode(data.train) + data.vocab.decode(data.val) + data.vocab.decode(data.test) == TEXT
    assert data.chars == {split: len(data.split(split)) for split in ("train", "val", "test")}
    # words: word-level tokens of each split, the denominators of perplexity per word
    assert data.words["test"] == len(word_tokens(data.vocab.decode(data.test)))
    words = load_text_data(f"text:{text_file}", level="word", val_fraction=0.1, test_fraction=0.1, min_count=1)
    assert words.chars == data.chars and len(words.train) == words.words["train"]
    assert word_tokens(words.vocab.decode(words.test)) == word_tokens(data.vocab.decode(data.test))


def test_line_limits_keep_a_splits_first_lines_and_count_them(text_file):
    whole = load_text_data(f"text:{text_file}", level="word", val_fraction=0.1, test_fraction=0.1, min_count=1)
    limited = load_text_data(f"text:{text_file}", level="word", val_fraction=0.1, test_fraction=0.1, min_count=1,
                             line_limits={"train": 3, "test": 1, "val": None})
    train_lines = split_text(TEXT, 0.1, 0.1, "x")["train"].split("\n")[:3]
    assert word_tokens(limited.vocab.decode(limited.train)) == word_tokens("\n".join(train_lines) + "\n")
    assert limited.chars["train"] == sum(len(line) + 1 for line in train_lines)
    assert limited.words["train"] == len(limited.train)
    assert limited.chars["test"] == len(split_text(TEXT, 0.1, 0.1, "x")["test"].split("\n")[0]) + 1
    assert torch.equal(limited.val, whole.val) and limited.chars["val"] == whole.chars["val"]


def test_text_file_errors_name_the_file(tmp_path, text_file):
    with pytest.raises(DataError, match="missing.txt"):
        load_text_data(f"text:{tmp_path / 'missing.txt'}")
    (tmp_path / "empty.txt").write_bytes(b" \n")
    with pytest.raises(DataError, match="empty.txt: empty"):
        load_text_data(f"text:{tmp_path / 'empty.txt'}")
    (tmp_path / "latin.txt").write_bytes("Génesis\n".encode("utf-8") * 3 + "Éxodo\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.txt: not UTF-8 \(byte 27") as caught:
        load_text_data(f"text:{tmp_path / 'latin.txt'}")
    assert "\n" not in str(caught.value)
    (tmp_path / "short.txt").write_text("ab")
    with pytest.raises(DataError, match="short.txt: too short"):
        load_text_data(f"text:{tmp_path / 'short.txt'}")
    with pytest.raises(UsageError, match="kjv or text:PATH"):
        load_text_data("fashion-mnist")
    with pytest.raises(DataError, match=r"corpus.txt: the characters '\.' ',' are not in the network's"):
        load_text_data(f"text:{text_file}", vocab=Vocabulary.build("char", TEXT.replace(",", "").replace(".", "")))


@pytest.mark.skipif(not Path("/usr/share/sword/mods.d/engKJV2006eb.conf").exists(),
                    reason="Debian's sword-text-kjv is not installed")
def test_kjv_is_the_bible_in_canonical_order_split_90_5_5():
    data = load_text_data("kjv")
    first, last = "In the beginning God created the heaven and the earth.\n", \
        "\nThe grace of our Lord Jesus Christ be with you all. Amen.\n"
    assert data.vocab.decode(data.train[:len(first)]) == first and data.vocab.decode(data.test[-len(last):]) == last
    total = sum(data.chars.values())
    assert 4_000_000 < total < 4_500_000
    assert abs(data.chars["test"] / total - 0.05) < 0.001 and abs(data.chars["val"] / total - 0.05) < 0.001
    assert 60 <= len(data.vocab) <= 80


def test_word_vocabulary_is_learnt_from_the_training_split_only(tmp_path):
    """Graves' word level: the vocabulary is the training split's words; a word only the test part holds reads
    as <unk> there."""
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat\n" * 40 + "zebra zebra zebra\n" * 2, encoding="utf-8")
    data = load_text_data(f"text:{path}", level="word", val_fraction=0.05, test_fraction=0.05, min_count=1)
    assert "zebra" not in data.vocab.stoi
    assert "zebra" in split_text(path.read_text(), 0.05, 0.05, "x")["test"]
    assert data.vocab.unk in data.test.tolist()


def test_character_vocabulary_is_the_alphabet_of_the_whole_text(tmp_path):
    """At the character level the alphabet is closed over the whole text: a character only the test part holds
    is in the vocabulary, and the test split decodes back to its text."""
    path = tmp_path / "corpus.txt"
    path.write_text("abc abc\n" * 40 + "xyz!\n" * 2, encoding="utf-8")
    data = load_text_data(f"text:{path}", val_fraction=0.05, test_fraction=0.05)
    test = split_text(path.read_text(), 0.05, 0.05, "x")["test"]
    assert "z" in test and "z" not in split_text(path.read_text(), 0.05, 0.05, "x")["train"]
    assert data.vocab.decode(data.test) == test


def test_first_lines_counts_lines_not_line_breaks():
    """A text of n lines (ending in a line break) is kept whole for any count ≥ n and cut after `count` lines
    below that; no line break is added."""
    assert first_lines("a\nb\n", 2) == first_lines("a\nb\n", 3) == first_lines("a\nb\n", 9) == "a\nb\n"
    assert first_lines("a\nb\nc\n", 2) == "a\nb\n" and first_lines("a\nb", 1) == "a\n" and first_lines("a\nb", 2) == "a\nb"
