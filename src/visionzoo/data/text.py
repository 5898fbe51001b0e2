"""Text for language modelling (Graves, "Generating Sequences With Recurrent Neural Networks", 2013,
§3: character- and word-level prediction, Table 1): the `kjv` and `text:PATH` data sets, their
splits and their vocabulary.

- `kjv`: the King James Bible (Debian's `sword-text-kjv`, read by data/sword.py), one verse per
  line, books in canonical order (about 4.3 M characters).
- `text:PATH`: any UTF-8 file (Windows line ends read as "\\n").

The splits are contiguous, as Graves' (and the Hutter-prize enwik8 convention he followed: the
last part of the text is the test set): the first 1 − val − test of the text trains, the next
part validates, the last part (for `kjv` the end of the New Testament) tests, each cut at the
line end after its fraction of the characters. Nothing is shuffled, so no seed is involved.

The vocabulary (`Vocabulary`, saved in the run directory as vocab.json) is at the character level
every character of the whole text (a closed alphabet: only which characters occur is learnt from
val/test), at the word level the training split's words seen at least `min_count` times; the
others read as `<unk>`. Words are runs of letters/digits (with inner apostrophes: "LORD’s") and
single punctuation marks; every line ends in an `<eos>` token (the Penn Treebank convention), so
word-level decoding restores line breaks but not the original spacing around punctuation.

Each split also records its characters and its words (word-level tokens, `<eos>` included), the
two denominators of Graves' measures: bits per character for either level, and perplexity per
word, 2^(BPC·c) with c the characters per word (the notes' formula), so that character- and
word-level models are compared on one scale (metrics/language.py, tasks/language.py).
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError, UsageError
from .datasets import NamedSplits

LEVELS = ("char", "word")
UNKNOWN, END_OF_LINE = "<unk>", "<eos>"
KJV_MODULE = "engKJV2006eb"
_WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


def word_tokens(text: str) -> list[str]:
    """The word-level tokens of `text`: words and punctuation marks of each line, then `<eos>`."""
    tokens: list[str] = []
    for line in text.split("\n"):
        tokens.extend(_WORD.findall(line))
        tokens.append(END_OF_LINE)
    if text.endswith("\n"):      # the final line break ended the last line already
        tokens.pop()
    return tokens


class Vocabulary:
    """Symbols ↔ indices at one level ("char" or "word"); `<unk>` (word level) stands for the rest."""

    def __init__(self, level: str, symbols: list[str]):
        if level not in LEVELS:
            raise UsageError(f"--level {level}: choose one of {', '.join(LEVELS)}")
        if len(set(symbols)) != len(symbols):
            raise DataError("a vocabulary lists a symbol twice; it is corrupt")
        self.level, self.itos = level, list(symbols)
        self.stoi = {symbol: i for i, symbol in enumerate(self.itos)}
        self.unk = self.stoi.get(UNKNOWN) if level == "word" else None

    @classmethod
    def build(cls, level: str, text: str, *, min_count: int = 1) -> Vocabulary:
        """The vocabulary of `text`: its characters, or its words seen `min_count` times and `<unk>`, `<eos>`."""
        if level == "char":
            return cls("char", sorted(set(text)))
        counts = Counter(word_tokens(text))
        kept = sorted(word for word, count in counts.items() if count >= min_count and word != END_OF_LINE)
        return cls("word", [UNKNOWN, END_OF_LINE, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    def tokenize(self, text: str) -> list[str]:
        return list(text) if self.level == "char" else word_tokens(text)

    def unknown(self, text: str) -> list[str]:
        """The symbols of `text` outside the vocabulary, in order of first appearance (none at the word
        level, where `<unk>` takes them)."""
        if self.unk is not None:
            return []
        missing = set(self.tokenize(text)) - self.stoi.keys()
        return [s for s in dict.fromkeys(self.tokenize(text)) if s in missing] if missing else []

    def encode(self, text: str) -> torch.Tensor:
        """int64 indices of `text`'s tokens; a character outside the vocabulary is a UsageError naming it."""
        missing = self.unknown(text)
        if missing:
            raise UsageError(f"the characters {' '.join(repr(c) for c in missing[:10])} are not in the vocabulary "
                             f"of {len(self)} the network was trained with")
        if self.level == "char":     # code points looked up in a table: a 4 M-character text in a fraction of a second
            codes = torch.from_numpy(np.frombuffer(text.encode("utf-32-le"), dtype=np.int32).astype(np.int64))
            table = torch.zeros(max(map(ord, self.itos)) + 1, dtype=torch.long)
            table[[ord(c) for c in self.itos]] = torch.arange(len(self))
            return table[codes]
        get = self.stoi.get
        return torch.tensor([get(s, self.unk) for s in self.tokenize(text)], dtype=torch.long)

    def decode(self, indices) -> str:
        symbols = [self.itos[int(i)] for i in indices]
        if self.level == "char":
            return "".join(symbols)
        lines, words = [], []
        for symbol in symbols:
            if symbol == END_OF_LINE:
                lines.append(" ".join(words) + "\n")
                words = []
            else:
                words.append(symbol)
        return "".join(lines) + " ".join(words)

    def to_json(self) -> dict:
        return {"level": self.level, "symbols": self.itos}

    @classmethod
    def from_json(cls, obj, where: str = "vocab.json") -> Vocabulary:
        if not (isinstance(obj, dict) and obj.get("level") in LEVELS and isinstance(obj.get("symbols"), list)
                and obj["symbols"] and all(isinstance(s, str) for s in obj["symbols"])):
            raise DataError(f"{where}: not a vocabulary (expected level and a list of symbols); the run is damaged")
        return cls(obj["level"], obj["symbols"])


@dataclass
class TextData(NamedSplits):
    """A text's splits as int64 token streams, its vocabulary, and per split its characters and
    words (see the module docstring); `text` keeps each split's plain text."""
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    vocab: Vocabulary
    level: str
    chars: dict[str, int]
    words: dict[str, int]


def read_text_file(path: str | os.PathLike) -> str:
    """A UTF-8 file's text; DataError naming the file for a missing, empty or undecodable one."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror}); give text:PATH of a UTF-8 text file") from None
    if not raw.strip():
        raise DataError(f"{path}: empty; a language model needs text to learn from")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); convert it, "
                        "e.g. iconv -f latin1 -t utf-8") from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def kjv_text(data_dir: str | os.PathLike | None = None) -> str:
    """The King James Bible, one verse per line in canonical order."""
    from .sword import bible_verses
    return "\n".join(bible_verses(KJV_MODULE, data_dir).values()) + "\n"


def corpus_text(spec: str, data_dir: str | os.PathLike | None = None) -> str:
    if spec == "kjv":
        return kjv_text(data_dir)
    if spec.startswith("text:") and spec[len("text:"):]:
        return read_text_file(spec[len("text:"):])
    raise UsageError(f"--data {spec}: a language model reads kjv or text:PATH (a UTF-8 file)")


def _cut(text: str, position: int) -> int:
    """The start of the line after `position` (or `position` itself where no line ends after it)."""
    end = text.find("\n", position)
    return end + 1 if end != -1 else position


def split_text(text: str, val_fraction: float, test_fraction: float, where: str) -> dict[str, str]:
    """Contiguous train / val / test parts, cut at line ends (see the module docstring)."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UsageError(f"validation fraction {val_fraction} and test fraction {test_fraction}: give two "
                         "fractions in (0, 1) summing to less than 1")
    n = len(text)
    val_start = _cut(text, round(n * (1 - val_fraction - test_fraction)))
    test_start = max(val_start, _cut(text, round(n * (1 - test_fraction))))
    parts = {"train": text[:val_start], "val": text[val_start:test_start], "test": text[test_start:]}
    short = [name for name, part in parts.items() if len(part) < 2]
    if short:
        raise DataError(f"{where}: too short for a {short[0]} split ({n} characters, "
                        f"{val_fraction:g}/{test_fraction:g} for val/test); give a longer text")
    return parts


def first_lines(text: str, count: int) -> str:
    """The text's first `count` lines, their line ends kept (all of it if it has no more)."""
    lines = text.split("\n")
    return text if len(lines) <= count else "\n".join(lines[:count]) + "\n"


def load_text_data(spec: str, *, data_dir: str | os.PathLike | None = None, level: str = "char",
                   val_fraction: float = 0.05, test_fraction: float = 0.05, min_count: int = 2,
                   vocab: Vocabulary | None = None, line_limits: dict[str, int | None] | None = None) -> TextData:
    """`kjv` or `text:PATH` as token streams of `level` (module docstring); `min_count`: word level only.
    `vocab`: encode with this vocabulary (a trained network's) instead of the text's own. `line_limits`
    (split → count or None): keep only a split's first lines (its characters and words counted on them)."""
    if level not in LEVELS:
        raise UsageError(f"--level {level}: choose one of {', '.join(LEVELS)}")
    text = corpus_text(spec, data_dir)
    parts = split_text(text, val_fraction, test_fraction, spec)
    parts.update({name: first_lines(parts[name], count) for name, count in (line_limits or {}).items() if count})
    if vocab is None:
        vocab = Vocabulary.build(level, text) if level == "char" else \
            Vocabulary.build(level, parts["train"], min_count=min_count)
    elif vocab.unknown(text):
        raise DataError(f"{spec}: the characters {' '.join(repr(c) for c in vocab.unknown(text)[:10])} are not in "
                        f"the network's vocabulary of {len(vocab)}; evaluate on text of its alphabet")
    streams = {name: vocab.encode(part) for name, part in parts.items()}
    return TextData(**streams, vocab=vocab, level=level, chars={name: len(part) for name, part in parts.items()},
                    words={name: max(len(word_tokens(part)), 1) for name, part in parts.items()})
