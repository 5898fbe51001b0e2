"""Parallel text for machine translation, and its subword vocabulary (notes 003, "Neural Machine
Translation"; Sutskever et al. 2014, Bahdanau et al. 2015, Vaswani et al. 2017).

Data sets (`--data`):
- `bible-en-es`: the King James Version (Debian's `sword-text-kjv`) aligned with the Reina-Valera
  1909 (`sword-text-sparv`) verse by verse through their shared KJV versification (data/sword.py):
  31 084 English→Spanish pairs (verses empty in either module are left out).
- `tsv:PATH`: a UTF-8 file of `source<TAB>target` lines; blank lines are skipped, any other line
  without exactly one tab or with an empty side is a DataError naming the file and line.
- `gettext-en-fr`: the English→French message catalogues of the Debian packages installed here
  (/usr/share/locale/fr/LC_MESSAGES/*.mo), read by our own reader of the GNU .mo format (a header
  of little- or big-endian u32: magic 0x950412de, revision, N, offsets of the original and
  translated string tables; each table N (length, offset) pairs). Messages holding format
  directives (%s, %d, %.*s, %1$s, %(name)s, {name}, {0}, ${VAR}) or control characters are left out, so
  are plural entries (msgid holding NUL), the catalogue headers and repeated msgids (first kept);
  a msgctxt prefix (before EOT, \\x04) is dropped.

Splits are fixed, whatever the run's seed: a permutation drawn with SPLIT_SEED puts
min(TEST_PAIRS, 5 %) of the pairs in the test split, min(VAL_PAIRS, 5 %) in validation and the rest
in training, so every run on a data set is tested on the same sentences.

Subword vocabulary: one joint SentencePiece model (Kudo & Richardson, EMNLP 2018 demo; BPE, Sennrich
et al. 2016) trained on both sides of the training split — a shared vocabulary, so that the
Transformer can share its embeddings (Vaswani Sec. 3.4) and names copied from source to target
share pieces. Ids: 0 <pad>, 1 <unk>, 2 <s>, 3 </s>. SentencePiece is imported only here and only
when needed (a declared runtime dependency; a missing install gets one line); its training is made deterministic
(one thread, no sampling of the input), and the model's bytes are saved in the run directory
(model.json), so that `visionzoo translate` and `eval` encode exactly as the training did.
"""
from __future__ import annotations

import base64
import io
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.errors import DataError, UsageError
from .datasets import NamedSplits

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPLIT_SEED = 1409          # the fixed permutation of every data set's pairs
VAL_PAIRS, TEST_PAIRS, HELD_OUT_FRACTION = 500, 1000, 0.05
GETTEXT_DIR = Path("/usr/share/locale/fr/LC_MESSAGES")
DATA_SETS = ("bible-en-es", "gettext-en-fr", "tsv:PATH")
_FORMAT = re.compile(r"%(?:\d+\$)?[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|L|q|j|z|t)?[a-zA-Z%]"
                     r"|%\(\w+\)|\{[\w.]*\}|\$\{?\w+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_MO_MAGIC = 0x950412DE


@dataclass
class ParallelData(NamedSplits):
    """Source/target sentence pairs of each split, and the languages."""
    train: list[tuple[str, str]]
    val: list[tuple[str, str]]
    test: list[tuple[str, str]]
    source_language: str
    target_language: str


def bible_pairs(data_dir: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """(KJV verse, Reina-Valera 1909 verse) for every reference both modules hold, canonical order."""
    from .sword import bible_verses
    english, spanish = bible_verses("engKJV2006eb", data_dir), bible_verses("spaRV1909eb", data_dir)
    return [(english[ref].strip(), spanish[ref].strip()) for ref in english
            if ref in spanish and english[ref].strip() and spanish[ref].strip()]


def tsv_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """The pairs of a `source<TAB>target` file (module docstring)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror}); give tsv:PATH of a tab-separated file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 (byte {exc.start}); convert it, e.g. iconv -f latin1 -t utf-8") from None
    pairs = []
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise DataError(f"{path}:{number}: expected 'source<TAB>target' with two non-empty sides, found "
                            f"{len(fields)} field(s): {line[:60]!r}")
        pairs.append((fields[0].strip(), fields[1].strip()))
    if not pairs:
        raise DataError(f"{path}: no sentence pairs; write one 'source<TAB>target' pair per line")
    return pairs


def read_mo(path: str | os.PathLike) -> dict[str, str]:
    """msgid → msgstr of a GNU gettext .mo catalogue (module docstring); DataError for a damaged file."""
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 20:
        raise DataError(f"{path}: too short for a .mo catalogue")
    for order in "<>":
        if struct.unpack(f"{order}I", raw[:4])[0] == _MO_MAGIC:
            break
    else:
        raise DataError(f"{path}: not a .mo catalogue (magic {raw[:4].hex()})")
    _, count, originals, translations = struct.unpack(f"{order}4I", raw[4:20])

    def string(table: int, i: int) -> str:
        length, offset = struct.unpack(f"{order}2I", raw[table + 8 * i:table + 8 * i + 8])
        if offset + length > len(raw) or table + 8 * i + 8 > len(raw):
            raise DataError(f"{path}: entry {i} points past the end of the file; the catalogue is damaged")
        return raw[offset:offset + length].decode("utf-8", errors="replace")

    return {string(originals, i): string(translations, i) for i in range(count)}


def usable_message(source: str, target: str) -> bool:
    """A catalogue entry worth translating: plain text both sides (module docstring)."""
    if not source.strip() or not target.strip() or "\x00" in source:
        return False
    return not any(pattern.search(side) for side in (source, target) for pattern in (_FORMAT, _CONTROL))


def gettext_pairs(directory: str | os.PathLike = GETTEXT_DIR) -> list[tuple[str, str]]:
    directory = Path(directory)
    catalogues = sorted(directory.glob("*.mo"))
    if not catalogues:
        raise DataError(f"{directory}: no .mo catalogues; install French translations (e.g. the locales of "
                        "the Debian packages) or use another --data")
    seen, pairs = set(), []
    for path in catalogues:
        for source, target in read_mo(path).items():
            source = source.rpartition("\x04")[2]
            if source not in seen and usable_message(source, target):
                seen.add(source)
                pairs.append((source.strip(), target.strip()))
    return pairs


def load_pairs(spec: str, data_dir: str | os.PathLike | None = None) -> tuple[list[tuple[str, str]], str, str]:
    """(pairs, source language, target language) of a --data spec."""
    if spec == "bible-en-es":
        return bible_pairs(data_dir), "en", "es"
    if spec == "gettext-en-fr":
        return gettext_pairs(Path(data_dir) if data_dir else GETTEXT_DIR), "en", "fr"
    if spec.startswith("tsv:") and spec[len("tsv:"):]:
        return tsv_pairs(spec[len("tsv:"):]), "source", "target"
    raise UsageError(f"--data {spec}: a translation model reads {', '.join(DATA_SETS)}")


def split_pairs(pairs: list[tuple[str, str]], where: str) -> dict[str, list[tuple[str, str]]]:
    """The fixed train/val/test split (module docstring)."""
    held_out = max(1, round(HELD_OUT_FRACTION * len(pairs)))
    test, val = min(TEST_PAIRS, held_out), min(VAL_PAIRS, held_out)
    if len(pairs) < test + val + 1:
        raise DataError(f"{where}: {len(pairs)} sentence pairs are too few for train, val and test splits; "
                        "give at least 3")
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    pick = [pairs[i] for i in order]
    return {"test": pick[:test], "val": pick[test:test + val], "train": pick[test + val:]}


def load_parallel(spec: str, data_dir: str | os.PathLike | None = None) -> ParallelData:
    pairs, source, target = load_pairs(spec, data_dir)
    return ParallelData(**split_pairs(pairs, spec), source_language=source, target_language=target)


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        raise UsageError("translation needs the sentencepiece package for its subword vocabulary: "
                         "pip install sentencepiece") from None
    return sentencepiece


class SubwordVocabulary:
    """A SentencePiece model: encode(text) → ids, decode(ids) → text; serialised as bytes."""

    def __init__(self, model: bytes):
        self.model = model
        self.processor = _sentencepiece().SentencePieceProcessor(model_proto=model)
        if (self.processor.pad_id(), self.processor.unk_id(), self.processor.bos_id(),
                self.processor.eos_id()) != (PAD, UNK, BOS, EOS):
            raise DataError("the subword model's special ids are not <pad> 0, <unk> 1, <s> 2, </s> 3; the run "
                            "is damaged")

    @classmethod
    def train(cls, texts: list[str], vocab_size: int, model_type: str = "bpe") -> SubwordVocabulary:
        """A joint vocabulary of at most `vocab_size` pieces learnt from `texts`, deterministically."""
        spm = _sentencepiece()
        written = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=written, vocab_size=vocab_size, model_type=model_type,
            pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, character_coverage=1.0, hard_vocab_limit=False,
            num_threads=1, input_sentence_size=0, shuffle_input_sentence=False, max_sentence_length=1 << 16,
            minloglevel=2)
        return cls(written.getvalue())

    def __len__(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.processor.encode(text)

    def decode(self, ids) -> str:
        return self.processor.decode([int(i) for i in ids if int(i) > EOS])

    def pieces(self, text: str) -> list[str]:
        return self.processor.encode(text, out_type=str)

    def to_json(self) -> dict:
        return {"kind": "sentencepiece", "model": base64.b64encode(self.model).decode("ascii")}

    @classmethod
    def from_json(cls, obj, where: str = "model.json") -> SubwordVocabulary:
        if not (isinstance(obj, dict) and obj.get("kind") == "sentencepiece" and isinstance(obj.get("model"), str)):
            raise DataError(f"{where}: holds no subword vocabulary (sentencepiece model); the run is damaged")
        try:
            return cls(base64.b64decode(obj["model"], validate=True))
        except (ValueError, RuntimeError) as exc:
            raise DataError(f"{where}: its subword model is damaged ({exc})") from None


def encode_pairs(pairs: list[tuple[str, str]], vocab: SubwordVocabulary) -> list[tuple[list[int], list[int]]]:
    """(source ids + </s>, <s> + target ids + </s>) per pair."""
    sources = vocab.processor.encode([source for source, _ in pairs])
    targets = vocab.processor.encode([target for _, target in pairs])
    return [(source + [EOS], [BOS, *target, EOS]) for source, target in zip(sources, targets)]


def pad_batch(sequences: list[list[int]], device=None) -> torch.Tensor:
    """(B, longest) int64, padded at the right with <pad>."""
    batch = torch.full((len(sequences), max(len(s) for s in sequences)), PAD, dtype=torch.long)
    for i, sequence in enumerate(sequences):
        batch[i, :len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return batch.to(device) if device is not None else batch
