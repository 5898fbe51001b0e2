"""Cloze-style reading comprehension data, built the way Hermann et al. built CNN/Daily Mail's
("Teaching Machines to Read and Comprehend", NeurIPS 2015, Sec. 2–3; the notes' "Cloze Style
Comprehension using LSTM", Table 1 and Table 2): a context document, a query with one entity
replaced by @placeholder, and the answer, that entity; every entity is anonymised as @entityN with
ids drawn afresh for each example, so that a reader must find the answer in the context rather
than remember facts about names; the candidate answers are the entities of the context.

- `kjv-cloze`: from the King James Bible (Debian's `sword-text-kjv`, data/sword.py). The context is
  the CONTEXT_VERSES verses before a verse of the same chapter (at least MIN_CONTEXT_VERSES), one
  sentence per verse; the query is that following verse, and each entity it shares with the context
  makes one question (Hermann: one question per entity of a summary bullet), all occurrences of the
  answer in the query replaced by @placeholder. Entities are proper nouns found by a documented
  recogniser (`kjv_entity_names`): word types seen at least ENTITY_MIN_COUNT times away from the
  start of a sentence, capitalised in at least ENTITY_CAPITALISED of those occurrences, longer than
  one letter (no "I", "O"); "LORD", "God", "Israel", "David" … (851 names). A token is an entity
  when it is capitalised and its lower case is such a name; the other words are lower-cased, as in
  CNN/Daily Mail. The K distinct entities of an example (context and query) are numbered by a
  random permutation of 0 … K − 1 drawn from (DATA_SEED, example number), so an answer's id says
  nothing. Splits, fixed (no --seed): the test questions come from books never trained on,
  TEST_BOOKS (Judges, Ruth, 1–2 Samuel — narratives dense in names — and Acts); the validation
  questions from VAL_FRACTION of the other chapters drawn with DATA_SEED; training from the rest.
  Contexts never cross a chapter, so no verse is read by two splits.
- `cnn-qa:PATH`: DeepMind's Q&A files (Hermann et al.'s release, e.g. `cnn/questions`): PATH holds
  `training/`, `validation/` and `test/` directories of `.question` files, each: the URL, a blank
  line, the context, a blank line, the query, a blank line, the answer, a blank line, then one
  `@entityN:Name` line per entity. The files are tokenised and anonymised already (ids permuted per
  document by the release); sentences of the context end at ".", "?" or "!" tokens. A file that
  breaks the format is a DataError naming it and the line.

The vocabulary (saved with a run as model.json's "vocab") is `<pad>` (index PAD = 0), `<unk>`,
@placeholder, @entity0 … @entity(E−1) and the training split's words seen `min_count` times; E,
the number of entity ids, is the largest id of any split plus one, the readers' number of classes.
`frequency_baseline` is Hermann et al.'s "maximum frequency" and "exclusive frequency" benchmarks
(Sec. 4, Table 5), which need no training.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError, UsageError
from .datasets import SPLITS, NamedSplits
from .text import KJV_MODULE, UNKNOWN, Vocabulary

PAD_TOKEN, PAD = "<pad>", 0
PLACEHOLDER, ENTITY_PREFIX = "@placeholder", "@entity"
DATA_SEED = 0
CONTEXT_VERSES, MIN_CONTEXT_VERSES = 8, 2
TEST_BOOKS = ("Judg", "Ruth", "1Sam", "2Sam", "Acts")
VAL_FRACTION = 0.05
ENTITY_MIN_COUNT, ENTITY_CAPITALISED = 5, 0.95
SENTENCE_ENDS = frozenset({".", "?", "!"})
# tokens after which a capital letter says nothing (a sentence or a clause of speech starts)
_CLAUSE_STARTS = frozenset({".", "?", "!", ";", ":"})
_WORD = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")
_ENTITY = re.compile(r"@entity(\d+)")
CNN_SPLIT_DIRECTORIES = {"train": "training", "val": "validation", "test": "test"}


@dataclass
class ClozeExample:
    """One question: the context's sentences of tokens, the query (with @placeholder), the answer
    (an @entityN token) and where it comes from (a verse reference or a file)."""
    sentences: list[list[str]]
    query: list[str]
    answer: str
    source: str = ""
    candidates: list[str] = field(init=False)

    def __post_init__(self):
        self.candidates = list(dict.fromkeys(t for s in self.sentences for t in s if _ENTITY.fullmatch(t)))

    @property
    def document(self) -> list[str]:
        return [token for sentence in self.sentences for token in sentence]


@dataclass
class EncodedCloze:
    """An example as indices: document (N,), its tokens' sentence numbers (N,), query (Q,), the
    candidates' entity ids and the answer's."""
    document: torch.Tensor
    segments: torch.Tensor
    query: torch.Tensor
    candidates: torch.Tensor
    answer: int


# ---- the DeepMind Q&A files --------------------------------------------------------------------------
def split_sentences(tokens: list[str]) -> list[list[str]]:
    """Sentences of a token list, each ending at a ".", "?" or "!" token (the rest is the last one)."""
    sentences, current = [], []
    for token in tokens:
        current.append(token)
        if token in SENTENCE_ENDS:
            sentences.append(current)
            current = []
    return sentences + [current] if current else sentences


def read_question_file(path: str | os.PathLike) -> ClozeExample:
    """One DeepMind `.question` file (module docstring); DataError naming the file for a broken one."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise DataError(f"{path}: cannot read it ({reason}); give cnn-qa:PATH of DeepMind .question files") from None

    def broken(line: int, what: str):
        return DataError(f"{path}:{line}: {what}; a .question file is URL, context, query, answer and "
                         "@entityN:Name lines, separated by blank lines")

    if len(lines) < 7:
        raise broken(len(lines), "too short")
    for number in (2, 4, 6):
        if lines[number - 1].strip():
            raise broken(number, "expected a blank line")
    context, query, answer = lines[2].split(), lines[4].split(), lines[6].strip()
    if not context:
        raise broken(3, "the context is empty")
    if PLACEHOLDER not in query:
        raise broken(5, f"the query has no {PLACEHOLDER}")
    if not _ENTITY.fullmatch(answer):
        raise broken(7, f"the answer {answer[:40]!r} is not an @entityN")
    if answer not in context:
        raise broken(7, f"the answer {answer} does not occur in the context")
    for number, line in enumerate(lines[8:], 9):
        name, colon, _ = line.partition(":")
        if line.strip() and not (colon and _ENTITY.fullmatch(name)):
            raise broken(number, f"{line[:40]!r} is not an @entityN:Name line")
    return ClozeExample(split_sentences(context), query, answer, path.name)


def load_cnn_questions(root: str | os.PathLike, limit: int | None = None) -> dict[str, list[ClozeExample]]:
    """The three splits of a DeepMind Q&A directory, files in name order (`limit`: the first of each)."""
    root = Path(root)
    splits = {}
    for split, directory in CNN_SPLIT_DIRECTORIES.items():
        folder = root / directory
        if not folder.is_dir():
            raise DataError(f"{folder}: no such directory; cnn-qa:PATH needs PATH/training, PATH/validation and "
                            "PATH/test holding .question files (DeepMind's cnn/questions layout)")
        files = sorted(folder.glob("*.question"))[:limit]
        if not files:
            raise DataError(f"{folder}: no .question files; cnn-qa:PATH needs them in each split's directory")
        splits[split] = [read_question_file(f) for f in files]
    return splits


# ---- kjv-cloze ---------------------------------------------------------------------------------------
def verse_tokens(text: str) -> list[str]:
    """Words (hyphenated names kept whole: "Beth-el") and punctuation marks of a verse."""
    return _WORD.findall(text)


def kjv_entity_names(verses: list[list[str]]) -> set[str]:
    """The recogniser's proper nouns (lower case) of tokenised verses (module docstring)."""
    seen, capitalised = Counter(), Counter()
    for tokens in verses:
        for i, token in enumerate(tokens):
            if i == 0 or tokens[i - 1] in _CLAUSE_STARTS or not token[0].isalpha():
                continue
            seen[token.lower()] += 1
            capitalised[token.lower()] += token[0].isupper()
    return {word for word, count in seen.items()
            if count >= ENTITY_MIN_COUNT and len(word) > 1 and capitalised[word] >= ENTITY_CAPITALISED * count}


def _is_entity(token: str, names: set[str]) -> bool:
    return token[0].isupper() and token.lower() in names


def _anonymise(tokens: list[str], names: set[str], ids: dict[str, int], answer: str | None = None) -> list[str]:
    out = []
    for token in tokens:
        if _is_entity(token, names):
            key = token.lower()
            out.append(PLACEHOLDER if key == answer else f"{ENTITY_PREFIX}{ids[key]}")
        else:
            out.append(token.lower())
    return out


def chapter_split(book: str, chapter: int, val_chapters: set[tuple[str, int]]) -> str:
    if book in TEST_BOOKS:
        return "test"
    return "val" if (book, chapter) in val_chapters else "train"


def kjv_cloze_examples(verses: dict[tuple[str, int, int], str]) -> dict[str, list[ClozeExample]]:
    """The questions of `kjv-cloze` (module docstring) from (book, chapter, verse) → text, by split."""
    tokenised = {reference: verse_tokens(text) for reference, text in verses.items()}
    names = kjv_entity_names(list(tokenised.values()))
    chapters: dict[tuple[str, int], list[list[str]]] = {}
    for (book, chapter, _), tokens in tokenised.items():
        chapters.setdefault((book, chapter), []).append(tokens)
    candidates = sorted(key for key in chapters if key[0] not in TEST_BOOKS)
    rng = np.random.default_rng(DATA_SEED)
    val_chapters = {candidates[i] for i in rng.choice(len(candidates), round(VAL_FRACTION * len(candidates)),
                                                     replace=False)}
    splits: dict[str, list[ClozeExample]] = {split: [] for split in SPLITS}
    number = 0   # the example's number, which seeds its entity ids
    for (book, chapter), chapter_verses in chapters.items():
        for v in range(MIN_CONTEXT_VERSES, len(chapter_verses)):
            context = chapter_verses[max(0, v - CONTEXT_VERSES):v]
            query = chapter_verses[v]
            in_context = {t.lower() for sentence in context for t in sentence if _is_entity(t, names)}
            shared = list(dict.fromkeys(t.lower() for t in query if _is_entity(t, names) and t.lower() in in_context))
            if not shared:
                continue
            everyone = list(dict.fromkeys(t.lower() for sentence in (*context, query) for t in sentence
                                          if _is_entity(t, names)))
            for answer in shared:
                permutation = np.random.default_rng([DATA_SEED, number]).permutation(len(everyone))
                ids = {name: int(k) for name, k in zip(everyone, permutation)}
                splits[chapter_split(book, chapter, val_chapters)].append(ClozeExample(
                    [_anonymise(s, names, ids) for s in context], _anonymise(query, names, ids, answer),
                    f"{ENTITY_PREFIX}{ids[answer]}", f"{book} {chapter}:{v + 1}"))
                number += 1
    return splits


# ---- vocabulary, encoding, loading --------------------------------------------------------------------
def entity_id(token: str) -> int:
    return int(token[len(ENTITY_PREFIX):])


def entity_count(vocab: Vocabulary) -> int:
    """E: the @entityN symbols of a cloze vocabulary (0 … E − 1)."""
    return sum(1 for symbol in vocab.itos if _ENTITY.fullmatch(symbol))


def build_vocabulary(splits: dict[str, list[ClozeExample]], min_count: int = 2) -> Vocabulary:
    """<pad>, <unk>, @placeholder, @entity0 … @entity(E−1), then the training words seen `min_count` times."""
    largest = max(entity_id(t) for examples in splits.values() for e in examples
                  for t in (*e.candidates, *(q for q in e.query if _ENTITY.fullmatch(q))))
    counts = Counter(t for e in splits["train"] for t in (*e.document, *e.query)
                     if not _ENTITY.fullmatch(t) and t != PLACEHOLDER)
    words = sorted(w for w, c in counts.items() if c >= min_count and w not in (PAD_TOKEN, UNKNOWN))
    return Vocabulary("word", [PAD_TOKEN, UNKNOWN, PLACEHOLDER, *(f"{ENTITY_PREFIX}{k}" for k in range(largest + 1)),
                               *words])


def encode_example(example: ClozeExample, vocab: Vocabulary, entities: int) -> EncodedCloze:
    """`example` as indices; DataError if it names an entity id the vocabulary lacks (≥ E)."""
    beyond = [t for t in (*example.candidates, *example.query) if _ENTITY.fullmatch(t) and entity_id(t) >= entities]
    if beyond:
        raise DataError(f"{example.source}: {beyond[0]} is beyond the {entities} entity ids the network was "
                        "trained with; evaluate on data anonymised like its training data")
    get, unk = vocab.stoi.get, vocab.unk
    document = torch.tensor([get(t, unk) for t in example.document], dtype=torch.long)
    segments = torch.cat([torch.full((len(s),), k, dtype=torch.long) for k, s in enumerate(example.sentences)])
    return EncodedCloze(document, segments, torch.tensor([get(t, unk) for t in example.query], dtype=torch.long),
                        torch.tensor([entity_id(t) for t in example.candidates], dtype=torch.long),
                        entity_id(example.answer))


@dataclass
class ClozeData(NamedSplits):
    """Splits of questions, the vocabulary and E, the entity ids (the readers' classes)."""
    train: list[ClozeExample]
    val: list[ClozeExample]
    test: list[ClozeExample]
    vocab: Vocabulary
    entities: int

    def encode(self, name: str) -> list[EncodedCloze]:
        return [encode_example(e, self.vocab, self.entities) for e in self.split(name)]


def cloze_splits(spec: str, data_dir: str | os.PathLike | None = None) -> dict[str, list[ClozeExample]]:
    if spec == "kjv-cloze":
        from .sword import bible_verses
        return kjv_cloze_examples(bible_verses(KJV_MODULE, data_dir))
    if spec.startswith("cnn-qa:") and spec[len("cnn-qa:"):]:
        return load_cnn_questions(spec[len("cnn-qa:"):])
    raise UsageError(f"--data {spec}: a cloze reader reads kjv-cloze or cnn-qa:PATH (DeepMind .question files)")


def load_cloze_data(spec: str, *, data_dir: str | os.PathLike | None = None, min_count: int = 2,
                    vocab: Vocabulary | None = None) -> ClozeData:
    """`kjv-cloze` or `cnn-qa:PATH` (module docstring); `vocab`: a trained network's instead of the data's own."""
    splits = cloze_splits(spec, data_dir)
    empty = [name for name in SPLITS if not splits[name]]
    if empty:
        raise DataError(f"--data {spec}: its {empty[0]} split has no questions")
    vocab = vocab or build_vocabulary(splits, min_count)
    return ClozeData(**splits, vocab=vocab, entities=entity_count(vocab))


def frequency_baseline(examples: list[ClozeExample], exclusive: bool = False) -> float:
    """Accuracy of answering the context's most frequent entity (Hermann et al.'s "maximum frequency");
    `exclusive`: the most frequent one not in the query ("exclusive frequency"). Ties: the first seen."""
    correct = 0
    for example in examples:
        counts = Counter(t for t in example.document if _ENTITY.fullmatch(t))
        if exclusive:
            counts = Counter({t: c for t, c in counts.items() if t not in example.query}) or counts
        correct += max(counts, key=counts.get) == example.answer   # Counter keeps first-seen order on ties
    return correct / max(len(examples), 1)
