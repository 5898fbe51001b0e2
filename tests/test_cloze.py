"""Cloze data (data/cloze.py) and readers (models/readers.py): the DeepMind .question reader on
generated files, kjv-cloze's construction on a small made-up Bible, the frequency baselines, and
each reader against a per-example transcription of its equations built from torch's own LSTMs."""
from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionzoo as vz
from visionzoo.core.errors import DataError, UsageError
from visionzoo.data.cloze import (
    PLACEHOLDER,
    SPLITS,
    TEST_BOOKS,
    ClozeExample,
    build_vocabulary,
    encode_example,
    frequency_baseline,
    kjv_cloze_examples,
    kjv_entity_names,
    load_cloze_data,
    read_question_file,
    verse_tokens,
)
from visionzoo.layers.recurrent import to_torch_network_state, torch_twin_cell
from visionzoo.models.readers import mask_candidates, masked_softmax, sentence_layout

FILLER = "the a went to city and saw with from house river field came".split()


def write_questions(root: Path, counts=(300, 60, 60), entities: int = 6, seed: int = 0) -> Path:
    """DeepMind-layout .question files of an easy cloze: the answer is the entity after "king"; the two
    distractors are spread over the three sentences, one of them twice (so frequency does not find it)."""
    rng = random.Random(seed)
    for split, n in zip(("training", "validation", "test"), counts):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(n):
            ids = rng.sample(range(entities), 3)
            sentences = []
            for s in range(3):
                words = [rng.choice(FILLER) for _ in range(5)]
                words.insert(rng.randrange(5), f"@entity{ids[1 + s % 2]}")
                sentences.append(words + ["."])
            slot = rng.randrange(3)
            at = rng.randrange(len(sentences[slot]) - 1)
            sentences[slot][at:at] = ["king", f"@entity{ids[0]}"]
            context = " ".join(w for s in sentences for w in s)
            (folder / f"{k:04d}.question").write_text(
                f"http://example.org/{split}/{k}\n\n{context}\n\nthe king was {PLACEHOLDER} .\n\n@entity{ids[0]}\n\n"
                + "".join(f"@entity{i}:Name {i}\n" for i in ids))
    return root


QUESTION = ("http://www.cnn.com/x\n\n@entity1 ( @entity2 ) the show went to @entity3 . it was sold in @entity3 "
            "on march 31 !\n\nthe show was sold at @entity1 in @placeholder\n\n@entity3\n\n@entity1:CNN\n"
            "@entity2:London\n@entity3:New York\n")


# ---- the .question reader --------------------------------------------------------------------------------
def test_a_question_file_is_read_into_sentences_query_answer_and_candidates(tmp_path):
    path = tmp_path / "a.question"
    path.write_text(QUESTION)
    example = read_question_file(path)
    assert [s[-1] for s in example.sentences] == [".", "!"] and example.document[:3] == ["@entity1", "(", "@entity2"]
    assert example.query[-1] == PLACEHOLDER and example.answer == "@entity3"
    assert example.candidates == ["@entity1", "@entity2", "@entity3"]       # the context's, first seen first
    assert example.source == "a.question"


@pytest.mark.parametrize("broken, line", [
    (QUESTION.replace("x\n\n@entity1", "x\nextra\n@entity1", 1), 2),                 # no blank line
    (QUESTION.replace("in @placeholder", "in @entity3"), 5),                          # no placeholder
    (QUESTION.replace("\n\n@entity3\n\n", "\n\nnew york\n\n"), 7),                    # answer not an entity
    (QUESTION.replace("\n\n@entity3\n\n", "\n\n@entity9\n\n"), 7),                    # answer not in the context
    (QUESTION.replace("@entity2:London", "London is @entity2"), 10),                  # mapping line
    ("http://x\n\n", 3),                                                               # truncated
])
def test_a_broken_question_file_is_a_one_line_data_error_naming_file_and_line(tmp_path, broken, line):
    path = tmp_path / "broken.question"
    path.write_text(broken)
    with pytest.raises(DataError, match=rf"broken\.question:{line}: ") as caught:
        read_question_file(path)
    assert "\n" not in str(caught.value)


def test_an_undecodable_file_and_a_missing_split_are_data_errors(tmp_path):
    path = tmp_path / "latin.question"
    path.write_bytes(QUESTION.replace("march", "m\xe4rz").encode("latin-1"))
    with pytest.raises(DataError, match="latin.question: cannot read it"):
        read_question_file(path)
    write_questions(tmp_path / "qa", counts=(3, 3, 3))
    (tmp_path / "qa" / "test").rename(tmp_path / "qa" / "testing")
    with pytest.raises(DataError, match="qa/test: no such directory"):
        load_cloze_data(f"cnn-qa:{tmp_path / 'qa'}")
    with pytest.raises(UsageError, match="--data nonsense"):
        load_cloze_data("nonsense")


def test_cnn_qa_data_vocabulary_and_encoding(tmp_path):
    data = load_cloze_data(f"cnn-qa:{write_questions(tmp_path / 'qa', counts=(20, 5, 5))}")
    assert (len(data.train), len(data.val), len(data.test)) == (20, 5, 5) and data.entities == 6
    assert data.vocab.itos[:4] == ["<pad>", "<unk>", PLACEHOLDER, "@entity0"] and "king" in data.vocab.stoi
    example = data.train[0]
    encoded = encode_example(example, data.vocab, data.entities)
    assert data.vocab.decode(encoded.document).split() == example.document
    assert encoded.segments.tolist() == [k for k, s in enumerate(example.sentences) for _ in s]
    assert encoded.answer == int(example.answer[len("@entity"):]) and encoded.answer in encoded.candidates.tolist()
    with pytest.raises(DataError, match="@entity5 is beyond the 5 entity ids"):
        encode_example(ClozeExample([["@entity5", "."]], ["@placeholder"], "@entity5", "q"), data.vocab, 5)


# ---- kjv-cloze ------------------------------------------------------------------------------------------
def made_up_bible() -> dict[tuple[str, int, int], str]:
    """Chapters of verses naming Abram, Lot, Sarai and Egypt mid-sentence, in a training book and a test book."""
    rng = random.Random(1)
    names = ["Abram", "Lot", "Sarai", "Egypt"]
    verses = {}
    for book in ("Gen", TEST_BOOKS[0]):
        for chapter in range(1, 4):
            for verse in range(1, 9):
                a, b = rng.sample(names, 2)
                verses[(book, chapter, verse)] = f"And {a} went with {b} into the land, and {a} dwelt there."
    return verses


def test_the_recogniser_finds_names_capitalised_away_from_sentence_starts():
    verses = [verse_tokens(v) for v in made_up_bible().values()]
    assert kjv_entity_names(verses) == {"abram", "lot", "sarai", "egypt"}      # not "And", which starts verses
    assert verse_tokens("Jacob came to Beth-el; and Israel’s sons.") == [
        "Jacob", "came", "to", "Beth-el", ";", "and", "Israel’s", "sons", "."]


def test_kjv_cloze_questions_are_built_like_cnns():
    splits = kjv_cloze_examples(made_up_bible())
    assert splits["test"] and splits["train"]
    assert all(e.source.split()[0] in TEST_BOOKS for e in splits["test"])
    assert not any(e.source.split()[0] in TEST_BOOKS for s in ("train", "val") for e in splits[s])
    ids_of_abram = set()
    for split in SPLITS:
        for example in splits[split]:
            assert example.answer in example.candidates and PLACEHOLDER in example.query
            assert example.answer not in example.query                    # every occurrence replaced
            assert all(t == t.lower() for t in example.document)           # words lower-cased, ids anonymous
            assert 2 <= len(example.sentences) <= 8                         # the verses before, within a chapter
            used = {int(t[len("@entity"):]) for t in (*example.document, *example.query) if t.startswith("@entity")}
            assert used <= set(range(4))                                    # a permutation of 0 … K − 1
    for example in splits["train"]:
        # the query's first name is the verse's a; where it is not the answer its id is visible
        if example.query[1] != PLACEHOLDER:
            ids_of_abram.add(example.query[1])
    assert len(ids_of_abram) > 1                                            # ids drawn afresh per example


@pytest.mark.slow
def test_kjv_cloze_splits_hold_out_books_and_chapters():
    data = load_cloze_data("kjv-cloze")
    books = {split: {e.source.split()[0] for e in data.split(split)} for split in SPLITS}
    assert books["test"] == set(TEST_BOOKS) and not books["train"] & set(TEST_BOOKS)
    chapters = {split: {e.source.split(":")[0] for e in data.split(split)} for split in SPLITS}
    assert not chapters["train"] & chapters["val"] and len(data.train) > 10 * len(data.val) > 0


def test_frequency_baselines_pick_the_most_frequent_entity():
    def example(document, query, answer):
        return ClozeExample([document.split()], query.split(), answer)
    examples = [example("@entity1 x @entity1 @entity2", "@placeholder y", "@entity1"),
                example("@entity1 @entity1 @entity2", "@entity1 @placeholder", "@entity2"),
                example("@entity3 @entity4", "@placeholder", "@entity4")]       # a tie: the first seen
    assert frequency_baseline(examples) == pytest.approx(1 / 3)
    assert frequency_baseline(examples, exclusive=True) == pytest.approx(2 / 3)  # the query's entity left out


def test_the_recogniser_ignores_clause_starts_single_letters_and_mostly_lower_case_words():
    """kjv_entity_names: words after ";", ":" (and sentence ends) say nothing; names must be longer than one
    letter, seen ENTITY_MIN_COUNT = 5 times, capitalised in at least 95 % of them (19 of 20 is enough, 18 not)."""
    verses = [verse_tokens(f"and the men said: Behold, {'Lot' if k else 'lot'} and I saw {'Eden' if k > 1 else 'eden'}")
              for k in range(20)] + [verse_tokens("so Noah wept") for _ in range(4)]
    assert kjv_entity_names(verses) == {"lot"}       # "Behold" after ":", "I", "Eden" 18/20, "Noah" 4 times


def _chapter_of_names(verses: int = 12) -> dict[tuple[str, int, int], str]:
    """One chapter whose verses k name Abram and Lot mid-sentence, and a numbered place of their own."""
    return {("Gen", 1, k): f"And Abram went to place{k} with Lot." for k in range(1, verses + 1)}


def test_a_question_reads_the_eight_verses_before_it_and_asks_for_each_shared_entity():
    """The context is the CONTEXT_VERSES = 8 verses before the query's (within its chapter); a query verse sharing
    two entities with its context makes two questions, one per entity."""
    examples = [e for split in SPLITS for e in kjv_cloze_examples(_chapter_of_names())[split]]
    last = [e for e in examples if e.source == "Gen 1:12"]
    assert len(last) == 2
    for example in last:
        assert [s[4] for s in example.sentences] == [f"place{k}" for k in range(4, 12)]
        assert example.query.count(PLACEHOLDER) == 1 and example.answer in example.candidates
    abram, lot = last                  # "and @entityK went to placeN with @entityL .": Abram is K, Lot L
    assert abram.query[1] == PLACEHOLDER and abram.answer == abram.sentences[0][1]
    assert lot.query[-2] == PLACEHOLDER and lot.answer == lot.sentences[0][-2]
    assert len(examples) == 2 * (12 - 2)                                                # verses 3 … 12


def test_entity_ids_are_drawn_afresh_for_every_question():
    """Hermann et al.'s anonymisation: the ids of one example's entities are a permutation drawn per example,
    so the same name does not keep one id across questions."""
    examples = [e for split in SPLITS for e in kjv_cloze_examples(_chapter_of_names())[split]]
    abram = {e.sentences[0][1] for e in examples}           # "and @entityK went …": Abram's id in that example
    assert abram == {"@entity0", "@entity1"}


def test_the_exclusive_frequency_falls_back_to_every_entity_when_the_query_names_them_all():
    """With no context entity left outside the query, "exclusive frequency" answers as "maximum frequency"."""
    examples = [ClozeExample(["@entity1 @entity1 @entity2".split()], "@entity1 @entity2 @placeholder".split(),
                             "@entity1")]
    assert frequency_baseline(examples, exclusive=True) == frequency_baseline(examples) == 1


# ---- the readers ----------------------------------------------------------------------------------------
READERS = ("attentive_reader", "multipass_reader", "singlepass_reader")
SIZES = dict(embedding=6, hidden_size=5, attention_size=4)


def build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    extra = {"output_size": 7} if name == "attentive_reader" else {"answer_size": 7}
    if name == "singlepass_reader":
        extra["top_size"] = 3
    return vz.create_model(name, num_classes=9, vocab_size=30, **SIZES, **extra).double().eval()


def batch(seed: int = 0):
    """Three documents of 3 sentences (one padded), queries of 4 and 6 tokens, candidates 0–4."""
    generator = torch.Generator().manual_seed(seed)
    document = torch.randint(1, 30, (3, 12), generator=generator)
    document[1, 9:] = 0
    segments = torch.tensor([0] * 4 + [1] * 3 + [2] * 5).repeat(3, 1)
    segments[1, 9:] = -1
    query = torch.randint(1, 30, (3, 6), generator=generator)
    query[0, 4:] = 0
    candidates = torch.zeros(3, 9, dtype=torch.bool)
    candidates[:, :5] = True
    return document, query, segments, candidates


@pytest.mark.parametrize("name", READERS)
def test_reader_shapes_and_candidate_masking(name):
    model = build(name)
    document, query, segments, candidates = batch()
    logits = model(document, query, candidates, segments)
    assert logits.shape == (3, 9)
    assert torch.isinf(logits[:, 5:]).all() and (logits[:, 5:] < 0).all() and torch.isfinite(logits[:, :5]).all()
    assert torch.equal(logits[:, :5], model(document, query, segments=segments)[:, :5])   # the mask only masks
    assert (logits.argmax(1) < 5).all()
    loss = F.cross_entropy(logits, torch.tensor([0, 3, 4]))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", READERS)
def test_attention_sums_to_one_over_the_context_and_padding_is_never_read(name):
    model = build(name)
    document, query, segments, _ = batch()
    logits, weights = model.attend(document, query, segments)
    if name == "attentive_reader":
        assert torch.allclose(weights.sum(-1), torch.ones(3, dtype=weights.dtype))
        assert (weights[1, 9:] == 0).all()
    elif name == "multipass_reader":
        assert torch.allclose(weights.sum(-1), torch.ones(3, 6, dtype=weights.dtype))
    else:   # over each real sentence; document 1's third sentence has 2 of its 5 tokens
        sums = weights.sum(-1)
        assert torch.allclose(sums, torch.ones_like(sums))
        assert (weights[1, 2, :, 2:] == 0).all()
    # more padding, at the right of documents and queries, changes nothing
    wider = F.pad(document, (0, 5)), F.pad(query, (0, 3)), F.pad(segments, (0, 5), value=-1)
    assert torch.allclose(model(*wider[:2], segments=wider[2]), logits, atol=1e-12)


def _lstm_states(network_pair, x):
    """Hermann's [h→_t; h←_t] of one unpadded sequence (T, F) by torch's bidirectional nn.LSTM."""
    twin = nn.LSTM(x.shape[-1], network_pair.hidden_size, bidirectional=True, batch_first=True).double()
    ahead, behind = to_torch_network_state(network_pair.ahead), to_torch_network_state(network_pair.behind)
    twin.load_state_dict({**ahead, **{f"{k}_reverse": v for k, v in behind.items()}})
    outputs, _ = twin(x[None])
    return outputs[0]


def _read_one(model, document, query):
    d, q = document[document != 0], query[query != 0]
    h_d = _lstm_states(model.document_encoder, model.embedding(d))
    h_q = _lstm_states(model.query_encoder, model.embedding(q))
    half = model.query_encoder.hidden_size
    return h_d, h_q, torch.cat([h_q[-1, :half], h_q[0, half:]])


def _answer_lstm_reference(answer, h_d, h_q):
    """The notes' equations for one example: m_ij, s_ij = exp(w^s m_ij), h̄_i = Σ_j s_ij h_j / Σ_j s_ij,
    the answer LSTM (torch's LSTMCell) on [h̄_i; h_i^q]."""
    cell = torch_twin_cell(answer.cell).double()
    h = c = torch.zeros(1, answer.cell.hidden_size, dtype=h_d.dtype)
    for i in range(len(h_q)):
        m = torch.tanh(answer.W_q(h_q[i]) + answer.W_d(h_d) + answer.W_a(h[0]))
        s = torch.exp(answer.w_s(m)[:, 0])
        h_bar = (s[:, None] * h_d).sum(0) / s.sum()
        h, c = cell(torch.cat([h_bar, h_q[i]])[None], (h, c))
    return h[0]


@torch.no_grad()
def test_attentive_reader_is_hermanns_equations():
    model = build("attentive_reader")
    document, query, _, _ = batch()
    for row in range(3):
        y_d, _, u = _read_one(model, document[row], query[row])
        m = torch.tanh(model.W_ym(y_d) + model.W_um(u))
        s = torch.exp(model.w_ms(m)[:, 0])
        r = (s[:, None] * y_d).sum(0) / s.sum()
        g = torch.tanh(model.W_rg(r) + model.W_ug(u))
        assert torch.allclose(model(document[row:row + 1], query[row:row + 1])[0], model.output(g), atol=1e-10)
    assert torch.allclose(model(document, query)[1], model(document[1:2, :9], query[1:2])[0], atol=1e-12)


@torch.no_grad()
def test_multipass_reader_is_the_notes_equations():
    model = build("multipass_reader")
    document, query, _, _ = batch()
    logits = model(document, query)
    for row in range(3):
        h_d, h_q, _ = _read_one(model, document[row], query[row])
        expected = model.output(_answer_lstm_reference(model.answer, h_d, h_q))
        assert torch.allclose(logits[row], expected, atol=1e-10)


@torch.no_grad()
def test_singlepass_reader_is_an_answer_lstm_per_sentence_and_a_top_lstm():
    model = build("singlepass_reader")
    document, query, segments, _ = batch()
    logits = model(document, query, segments=segments)
    top = nn.LSTM(7, 3, batch_first=True).double()
    top.load_state_dict(to_torch_network_state(model.top))
    for row in range(3):
        h_d, h_q, _ = _read_one(model, document[row], query[row])
        sentences = segments[row][segments[row] >= 0]
        finals = torch.stack([_answer_lstm_reference(model.answer, h_d[sentences == m], h_q)
                              for m in range(int(sentences.max()) + 1)])
        outputs, _ = top(finals[None])
        assert torch.allclose(logits[row], model.output(outputs[0, -1]), atol=1e-10)


def test_sentence_layout_lists_each_sentences_positions():
    segments = torch.tensor([[0, 0, 1, 1, 1, 2], [0, 1, 1, -1, -1, -1]])
    assert sentence_layout(segments).tolist() == [[[0, 1, -1], [2, 3, 4], [5, -1, -1]],
                                                  [[0, -1, -1], [1, 2, -1], [-1, -1, -1]]]


def test_a_fully_masked_row_gives_zero_weights_and_finite_gradients():
    scores = torch.randn(2, 4, requires_grad=True)
    mask = torch.tensor([[True, False, True, False], [False] * 4])
    weights = masked_softmax(scores, mask)
    assert weights[0].sum().item() == pytest.approx(1) and (weights[1] == 0).all()
    (weights * torch.arange(4.0)).sum().backward()
    assert torch.isfinite(scores.grad).all()
    with pytest.raises(UsageError, match="candidates of shape"):
        mask_candidates(torch.zeros(2, 5), torch.ones(2, 4, dtype=torch.bool))


def test_an_empty_document_is_refused():
    model = build("attentive_reader")
    with pytest.raises(UsageError, match="no tokens"):
        model(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))


@pytest.mark.parametrize("name", READERS)
def test_card_counts_a_short_passage(name):
    card = vz.model_card(name)
    # the embedding of CNN's vocabulary; the bidirectional LSTMs' 4 gates of 64 units reading 64 + 64 for each of
    # the 32 document and 8 query tokens, and more for the attention
    assert card["task"] == "cloze" and card["params"] > 118_497 * 64 and card["macs"] > (32 + 8) * 2 * 4 * 64 * 128
    assert math.isfinite(card["macs"])


def test_vocabulary_counts_only_training_words():
    splits = {"train": [ClozeExample([["a", "b", "a", "@entity0"]], ["b", PLACEHOLDER, "b"], "@entity0")],
              "val": [ClozeExample([["zebra", "zebra", "@entity3"]], [PLACEHOLDER], "@entity3")],
              "test": [ClozeExample([["@entity1"]], [PLACEHOLDER], "@entity1")]}
    vocab = build_vocabulary(splits, min_count=2)
    assert vocab.itos == ["<pad>", "<unk>", PLACEHOLDER, "@entity0", "@entity1", "@entity2", "@entity3", "a", "b"]


@torch.no_grad()
def test_the_preprocessing_lstm_is_torchs_bidirectional_lstm_and_zero_at_padding():
    """BidirectionalEncoder: outputs [h→_t; h←_t] of each row's real tokens as nn.LSTM(bidirectional) reads them
    alone, zero at padding; the summary is [h→ at the last token; h← at the first]."""
    model = build("attentive_reader")
    document, _, _, _ = batch()
    lengths = (document != 0).sum(1)
    outputs, summary = model.document_encoder(model.embedding(document), lengths)
    half = model.document_encoder.hidden_size
    for row, length in enumerate(lengths.tolist()):
        alone = _lstm_states(model.document_encoder, model.embedding(document[row, :length]))
        assert torch.allclose(outputs[row, :length], alone, atol=1e-12)
        assert (outputs[row, length:] == 0).all()
        assert torch.allclose(summary[row], torch.cat([alone[-1, :half], alone[0, half:]]), atol=1e-12)


@torch.no_grad()
def test_the_single_pass_reader_reads_each_row_at_its_last_real_sentence():
    """Rows of a batch with fewer sentences than others (padded sentences after the real ones): each row's logits
    are those of the row read alone."""
    model = build("singlepass_reader")
    document, query, segments, _ = batch()
    document[1, 7:], segments[1, 7:] = 0, -1          # row 1: two sentences, rows 0 and 2: three
    logits = model(document, query, segments=segments)
    for row, length in enumerate((document != 0).sum(1).tolist()):
        q = query[row:row + 1, :int((query[row] != 0).sum())]
        alone = model(document[row:row + 1, :length], q, segments=segments[row:row + 1, :length])
        assert torch.allclose(logits[row], alone[0], atol=1e-12)
