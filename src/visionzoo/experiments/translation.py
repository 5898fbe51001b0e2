"""The notes' translation and sampling claims (notes 003, "Neural Machine Translation using LSTM / RNN",
"Language Modeling using LSTM"), run with the engine.

1. `reverse-source` — Sutskever, Vinyals, Le, NeurIPS 2014, Sec. 3.3 and Fig. 1: feeding the fixed-vector
   LSTM encoder the source backwards "introduces many short term dependencies" and helps (Table 1: 26.17
   → 30.59 BLEU). The same `seq2seq_lstm`, seed and steps, with `reverse_source` off and on.
2. `attention-long-sentences` — Bahdanau, Cho, Bengio, ICLR 2015, Fig. 2: the fixed-vector encoder–decoder's
   BLEU falls as the source grows, RNNsearch's stays up. `seq2seq_lstm` (reversed, Sutskever's best) and
   `rnnsearch` trained alike; BLEU by source length (the task's LENGTH_BINS) for both, one plot.
3. `beam-vs-greedy` — Sutskever Sec. 3.2 and Table 1 (beam 1, 2, 12): one trained network decoded greedily
   and by beam search with K = 1, 2, 4, 8 and length normalisation (models/decoding.py); BLEU and the mean
   log-probability per token of the chosen translations (what the search maximises).
4. `biased-sampling` — Graves, "Generating Sequences With Recurrent Neural Networks", 2013, Sec. 5.4 and
   Fig. 16: the probability bias b, Pr(k) ∝ exp(ŷ_k (1 + b)), makes samples "less diverse" and "more
   regular". One character-level `lstm_lm` trained on the King James Bible; for each b, several samples
   after the same prompts; diversity is the share of distinct character 5-grams among the samples of a
   prompt and the entropy of the biased next-character distribution, regularity the share of generated
   words that occur in the training text and the unbiased model's bits per character of the samples.

Data for 1–3. On this CPU the Bible (31 000 verse pairs, 15–20 CPU-min an epoch for these networks,
BENCHMARKS.md) leaves a quick budget one fraction of an epoch and BLEU of a few points, too little to
separate the variants. The experiments build `toy`: a language pair whose target is a deterministic
word-by-word translation of the source (each of SOURCE_WORDS has one TARGET_WORDS counterpart, the order
kept, so the alignment is monotone like English–French), sentences of independent uniformly drawn words
of a length drawn uniformly between the budget's bounds, written as `tsv:` into the experiment's folder.
Nothing in a sentence is predictable from the rest of it, so a fixed vector must hold every word — the
bottleneck Bahdanau's claim is about — and the first target word depends on the first source word only,
the long dependency that Sutskever's reversal shortens. Verdicts on BLEU differences use Koehn's paired
bootstrap ("Statistical Significance Tests for Machine Translation Evaluation", EMNLP 2004): the test
sentences resampled with replacement BOOTSTRAP_SAMPLES times, a difference is significant when one system
wins in at least SIGNIFICANCE of the resamples.

Budgets: smoke trains tiny networks one epoch on 200 pairs (the machinery only); quick 12 000 pairs, three
epochs, 300 test sentences (1–4 CPU-min per experiment on one thread); full 30 000 pairs, eight epochs, a
two-layer seq2seq, 1 000 test sentences. The language model reads the Bible's first 20 000 / 1 M / 4 M
characters.
"""
from __future__ import annotations

import math
import random
import re
from pathlib import Path

import torch

from ..core.io import write_text
from ..metrics.bleu import bleu, bleu_from_statistics, bleu_statistics
from .base import Context, Outcome, experiment, verdict
from .common import figure, save_figure, train_registered
from .family_table import spearman

SOURCE_WORDS = tuple(c + v for c in "bdgkmnpt" for v in "aei")            # 24 words: ba be bi da …
TARGET_WORDS = tuple(c + v + "l" for c in "fhjlrsvz" for v in "ouy")     # their translations: fol ful fyl …
BOOTSTRAP_SAMPLES, SIGNIFICANCE = 1000, 0.95


def toy_pairs(count: int, min_words: int, max_words: int, seed: int) -> list[tuple[str, str]]:
    """`count` (source, target) sentences of the toy language pair (module docstring)."""
    draw = random.Random(seed)
    pairs = []
    for _ in range(count):
        words = [draw.randrange(len(SOURCE_WORDS)) for _ in range(draw.randint(min_words, max_words))]
        pairs.append((" ".join(SOURCE_WORDS[w] for w in words), " ".join(TARGET_WORDS[w] for w in words)))
    return pairs


def toy_corpus(ctx: Context, count: int, min_words: int, max_words: int) -> str:
    """Write the toy pairs into ctx.out/data and return their `tsv:` data spec."""
    path = Path(ctx.out) / "data" / f"toy-{min_words}-{max_words}-{count}-seed{ctx.seed}.tsv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, "".join(f"{s}\t{t}\n" for s, t in toy_pairs(count, min_words, max_words, ctx.seed)))
    return f"tsv:{path}"


# ---- shared by the translation experiments ---------------------------------------------------------
REVERSE_LENGTHS = (4, 20)       # words per sentence of the reversal and beam corpora
LONG_LENGTHS = (3, 49)          # of the attention corpus: the LENGTH_BINS bins up to 40-49 filled
BEAMS = (1, 2, 4, 8)


def _pair_count(ctx: Context) -> int:
    return ctx.pick(200, 12000, 30000)


def _settings(ctx: Context, spec: str) -> dict:
    """The training of every translation network here: Adam, one-cycle, clipped gradients, no dropout (a few
    epochs over thousands of random sentences leave little to over-fit), the last epoch's weights."""
    return dict(data=spec, epochs=ctx.pick(1, 3, 8), batch_size=ctx.pick(16, 64, 64), lr=3e-3, optimizer="adam",
                weight_decay=0.0, schedule="onecycle", clip_grad=1.0, vocab_size=100, beam=4, length_penalty=1.0,
                test_limit=ctx.pick(16, 300, 1000), keep="last")


def _seq2seq_args(ctx: Context, reverse: bool) -> dict:
    return dict(embedding=ctx.pick(16, 64, 64), hidden_size=ctx.pick(32, 256, 256), num_layers=ctx.pick(1, 1, 2),
                dropout=0.0, reverse_source=reverse)


def _rnnsearch_args(ctx: Context) -> dict:
    size = ctx.pick(16, 128, 128)
    return dict(embedding=ctx.pick(16, 64, 64), hidden_size=size, attention_size=size, maxout_size=size, dropout=0.0)


def _test_translations(trainer, *, beam: int, alpha: float, sources: list[str] | None = None) -> list[str]:
    """The trained network's translations of the test sources (beam 0: greedy), as the task's test makes them."""
    from ..tasks.translation import translate
    task = trainer.task
    sources = [s for s, _ in task.data.test] if sources is None else sources
    return translate(trainer.eval_model, task.vocab, sources, beam=beam, alpha=alpha, device=trainer.device)


def _train_and_translate(ctx: Context, network: str, run: str, model_args: dict, settings: dict,
                         keep=lambda source: True):
    """Train `network` on the experiment's settings, then translate the test sources that `keep` accepts with
    the run's beam: (summary, trainer, the kept test indices, their translations)."""
    summary, trainer = train_registered(ctx, network, run, model_args=model_args, **settings)
    sources = [s for s, _ in trainer.task.data.test]
    kept = [i for i, source in enumerate(sources) if keep(source)]
    translations = _test_translations(trainer, beam=settings["beam"], alpha=settings["length_penalty"],
                                      sources=[sources[i] for i in kept])
    return summary, trainer, kept, translations


def sentence_statistics(hypotheses: list[str], references: list[str]) -> torch.Tensor:
    """(N, 10) BLEU statistics per sentence — matched and total n-grams (n = 1 … 4), hypothesis and reference
    lengths — whose column sums are the corpus' statistics."""
    rows = []
    for hypothesis, reference in zip(hypotheses, references):
        s = bleu_statistics([hypothesis], [reference])
        rows.append([*s["matched"], *s["total"], s["hypothesis_length"], s["reference_length"]])
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 10)


def _bleu_of(sums: torch.Tensor) -> float:
    values = [int(v) for v in sums.tolist()]
    return bleu_from_statistics(values[:4], values[4:8], values[8], values[9])


def paired_bootstrap(first: list[str], second: list[str], references: list[str], seed: int,
                     samples: int = BOOTSTRAP_SAMPLES) -> dict:
    """Koehn's paired bootstrap: the share of `samples` resamplings of the sentences (with replacement, the
    same for both systems) in which the first system's corpus BLEU is higher, and in which it is lower."""
    a, b = sentence_statistics(first, references), sentence_statistics(second, references)
    if len(references) == 0:
        return {"first_better": 0.0, "second_better": 0.0, "samples": 0}
    index = torch.randint(len(references), (samples, len(references)), generator=torch.Generator().manual_seed(seed))
    a_sums, b_sums = a[index].sum(1), b[index].sum(1)
    differences = [_bleu_of(x) - _bleu_of(y) for x, y in zip(a_sums, b_sums)]
    return {"first_better": sum(d > 0 for d in differences) / samples,
            "second_better": sum(d < 0 for d in differences) / samples, "samples": samples}


def _significant(boot: dict) -> bool:
    return max(boot["first_better"], boot["second_better"]) >= SIGNIFICANCE


def _epoch_curves(trainer) -> dict:
    return {key: [record[key] for record in trainer.history] for key in ("train_loss", "val_loss", "val_bleu")}


# ---- 1. reversing the source ---------------------------------------------------------------------------------
@experiment("reverse-source", notes="003", heading="Neural Machine Translation using LSTM",
            claim="Reading the source sentence backwards helps the fixed-vector LSTM encoder-decoder: it introduces "
                  "short-term dependencies between the first source and target words, so the same network trained "
                  "alike reaches a lower validation loss and a higher BLEU")
def reverse_source(ctx: Context) -> Outcome:
    spec = toy_corpus(ctx, _pair_count(ctx), *REVERSE_LENGTHS)
    settings = _settings(ctx, spec)
    rows, curves, outputs = [], {}, {}
    for reverse in (False, True):
        label = "reversed" if reverse else "in order"
        summary, trainer, _, outputs[label] = _train_and_translate(
            ctx, "seq2seq_lstm", f"reverse-source-{label.replace(' ', '-')}", _seq2seq_args(ctx, reverse), settings)
        curves[label] = _epoch_curves(trainer)
        rows.append({"source": label, "test_bleu": summary["test_bleu"],
                     "test_bleu_greedy": summary["test_bleu_greedy"],
                     "test_loss": summary["test_loss"], "final_val_loss": curves[label]["val_loss"][-1],
                     "train_seconds": round(summary["train_seconds"], 1)})
    references = [t for _, t in trainer.task.data.test]
    boot = paired_bootstrap(outputs["reversed"], outputs["in order"], references, ctx.seed)
    in_order, reversed_ = rows
    held = reversed_["test_bleu"] > in_order["test_bleu"] and reversed_["final_val_loss"] < in_order["final_val_loss"]
    fig, axes = figure(1, 2)
    for colour, (label, curve) in enumerate(curves.items()):
        epochs = range(1, len(curve["val_loss"]) + 1)
        axes[0, 0].plot(epochs, curve["val_loss"], "-o", color=f"C{colour}", label=f"{label}: validation")
        axes[0, 0].plot(epochs, curve["train_loss"], "--", color=f"C{colour}", label=f"{label}: training")
        axes[0, 1].plot(epochs, curve["val_bleu"], "-o", color=f"C{colour}", label=label)
    axes[0, 0].set(xlabel="epoch", ylabel="cross-entropy (nats per target token)", title="seq2seq_lstm, toy corpus")
    axes[0, 1].set(xlabel="epoch", ylabel="validation BLEU (greedy)", title="source in order vs reversed")
    for ax in axes[0]:
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return Outcome(
        verdict(held, conclusive=_significant(boot)),
        f"Test BLEU (beam {settings['beam']}): reversed {reversed_['test_bleu']:.2f}, in order "
        f"{in_order['test_bleu']:.2f} "
        f"(greedy {reversed_['test_bleu_greedy']:.2f} vs {in_order['test_bleu_greedy']:.2f}); final validation loss "
        f"{reversed_['final_val_loss']:.4f} vs {in_order['final_val_loss']:.4f} nats per token. Reversed better in "
        f"{boot['first_better']:.1%} of {boot['samples']} paired bootstrap resamplings of the test sentences, worse in "
        f"{boot['second_better']:.1%}. Held when reversal gives both the higher BLEU and the lower validation loss; "
        f"inconclusive unless one side wins {SIGNIFICANCE:.0%} of the resamplings.",
        f"Toy corpus ({_pair_count(ctx)} pairs, {REVERSE_LENGTHS[0]}–{REVERSE_LENGTHS[1]} words, word-by-word "
        f"monotone translation; module docstring); seq2seq_lstm "
        f"{_seq2seq_args(ctx, True) | {'reverse_source': 'off / on'}}; "
        f"{settings}; the same seed, data order and steps for both.",
        {"variants": rows, "curves": curves, "bootstrap": boot}, [save_figure(fig, ctx, "reverse-source.png")], rows)


# ---- 2. attention on long sentences ----------------------------------------------------------------------------
@experiment("attention-long-sentences", notes="003", heading="Neural Machine Translation using RNN",
            claim="Attention keeps BLEU up on long sentences where the fixed-vector encoder falls (Bahdanau's Fig. 2): "
                  "RNNsearch's BLEU stays high as the source grows while the seq2seq LSTM's drops")
def attention_long_sentences(ctx: Context) -> Outcome:
    from ..tasks.translation import LONG_SENTENCE
    spec = toy_corpus(ctx, _pair_count(ctx), *LONG_LENGTHS)
    settings = _settings(ctx, spec)
    networks = {"fixed vector (seq2seq_lstm, reversed)": ("seq2seq_lstm", _seq2seq_args(ctx, True)),
                "attention (rnnsearch)": ("rnnsearch", _rnnsearch_args(ctx))}
    rows, by_length, long_outputs = [], {}, {}
    for label, (network, args) in networks.items():
        summary, trainer, long, long_outputs[label] = _train_and_translate(
            ctx, network, f"attention-long-{network}", args, settings,
            keep=lambda source: len(source.split()) > LONG_SENTENCE)
        by_length[label] = summary["test_bleu_by_length"]
        bins = list(by_length[label].values())
        rows.append({"network": label, "test_bleu": summary["test_bleu"],
                     f"bleu_over_{LONG_SENTENCE}_words": summary[f"test_bleu_over_{LONG_SENTENCE}_words"],
                     "bleu_shortest_bin": bins[0]["bleu"], "bleu_longest_bin": bins[-1]["bleu"],
                     "params": summary["params"], "train_seconds": round(summary["train_seconds"], 1)})
    references = [t for _, t in trainer.task.data.test]
    long_references = [references[i] for i in long]
    fixed, attention = rows
    labels = list(networks)
    boot = paired_bootstrap(long_outputs[labels[1]], long_outputs[labels[0]], long_references, ctx.seed)
    key = f"bleu_over_{LONG_SENTENCE}_words"
    falls = {row["network"]: row["bleu_shortest_bin"] - row["bleu_longest_bin"] for row in rows}
    held = bool(long) and attention[key] > fixed[key] and falls[labels[1]] < falls[labels[0]]
    fig, axes = figure(1, 1, width=7.0)
    for label, bins in by_length.items():
        axes[0, 0].plot(range(len(bins)), [b["bleu"] for b in bins.values()], "-o", label=label)
    first = by_length[labels[0]]
    axes[0, 0].set_xticks(range(len(first)), [f"{k}\n(n={v['n']})" for k, v in first.items()], fontsize=8)
    axes[0, 0].set(xlabel="source sentence length (words)", ylabel=f"test BLEU (beam {settings['beam']})",
                   title="BLEU by source length (Bahdanau et al., Fig. 2)", ylim=(0, 100))
    axes[0, 0].legend(fontsize=8)
    fall_text = ", ".join(f"{label} {falls[label]:.2f}" for label in labels)
    return Outcome(
        verdict(held, conclusive=bool(long) and _significant(boot)),
        f"Test BLEU on sources over {LONG_SENTENCE} words ({len(long)} sentences): attention {attention[key]:.2f}, "
        f"fixed vector {fixed[key]:.2f}; BLEU lost from the shortest to the longest length bin: {fall_text}; "
        f"all test sentences {attention['test_bleu']:.2f} vs {fixed['test_bleu']:.2f}. Attention better on the long "
        f"sentences in {boot['first_better']:.1%} of {boot['samples']} paired bootstrap resamplings, worse in "
        f"{boot['second_better']:.1%}. Held when attention scores higher on the long sentences and loses less BLEU "
        f"from short to long; inconclusive unless one side wins {SIGNIFICANCE:.0%} of the resamplings.",
        f"Toy corpus ({_pair_count(ctx)} pairs, {LONG_LENGTHS[0]}–{LONG_LENGTHS[1]} words; module docstring); "
        f"seq2seq_lstm {_seq2seq_args(ctx, True)}, rnnsearch {_rnnsearch_args(ctx)}; {settings}; the same seed, data "
        "order and steps for both.",
        {"networks": rows, "bleu_by_length": by_length, "bootstrap_long": boot},
        [save_figure(fig, ctx, "attention-long-sentences.png")], rows)


# ---- 3. beam search against greedy decoding ---------------------------------------------------------------------
@experiment("beam-vs-greedy", notes="003", heading="Neural Machine Translation using LSTM",
            claim="Beam search finds better translations than greedy decoding: with one trained network, BLEU rises "
                  "from greedy to a beam of a few hypotheses (Sutskever's Table 1: beam 2 gives most of the gain)")
def beam_vs_greedy(ctx: Context) -> Outcome:
    spec = toy_corpus(ctx, _pair_count(ctx), *REVERSE_LENGTHS)
    settings = _settings(ctx, spec)
    summary, trainer = train_registered(ctx, "seq2seq_lstm", "beam-vs-greedy-seq2seq_lstm",
                                        model_args=_seq2seq_args(ctx, True), **settings)
    references = [t for _, t in trainer.task.data.test]
    decoders = {"greedy": (0, 1.0), **{f"beam {k}": (k, 1.0) for k in BEAMS},
                "beam 4, no length normalisation": (4, 0.0)}
    rows, outputs = [], {}
    for label, (beam, alpha) in decoders.items():
        translations = outputs[label] = _test_translations(trainer, beam=beam, alpha=alpha)
        changed = sum(a != b for a, b in zip(translations, outputs["greedy"]))
        rows.append({"decoder": label, "beam": beam, "alpha": alpha, "test_bleu": bleu(translations, references),
                     "log_prob_per_token": mean_log_prob_per_token(trainer, translations),
                     "changed_vs_greedy": changed / len(references)})
    by_label = {row["decoder"]: row for row in rows}
    boot = paired_bootstrap(outputs["beam 4"], outputs["greedy"], references, ctx.seed)
    greedy, beam4 = by_label["greedy"], by_label["beam 4"]
    fig, axes = figure(1, 2)
    beams = [row for row in rows if row["alpha"] == 1.0 and row["beam"]]
    for ax, key, name in ((axes[0, 0], "test_bleu", "test BLEU"), (axes[0, 1], "log_prob_per_token",
                                                                       "mean log P(y|x) per token of the output")):
        ax.plot([row["beam"] for row in beams], [row[key] for row in beams], "-o", label="beam search, α = 1")
        ax.axhline(greedy[key], color="grey", linestyle="--", label="greedy")
        ax.set(xlabel="beam width K", ylabel=name, xscale="log", xticks=list(BEAMS))
        ax.minorticks_off()
        ax.set_xticklabels([str(k) for k in BEAMS])
        ax.legend(fontsize=8)
    axes[0, 0].set_title("one seq2seq_lstm (reversed source)")
    return Outcome(
        verdict(beam4["test_bleu"] > greedy["test_bleu"], conclusive=_significant(boot)),
        "Test BLEU: greedy " + f"{greedy['test_bleu']:.2f}, " + ", ".join(
            f"{row['decoder']} {row['test_bleu']:.2f}" for row in rows[1:]) + f". Beam 4 better in "
        f"{boot['first_better']:.1%} of {boot['samples']} paired bootstrap resamplings of the test sentences, worse in "
        f"{boot['second_better']:.1%}; it changes {beam4['changed_vs_greedy']:.1%} of the greedy translations and "
        f"raises their mean log-probability per token from {greedy['log_prob_per_token']:.4f} to "
        f"{beam4['log_prob_per_token']:.4f}. Held when beam 4 scores the higher BLEU; inconclusive unless one side "
        f"wins {SIGNIFICANCE:.0%} of the resamplings.",
        f"Toy corpus ({_pair_count(ctx)} pairs, {REVERSE_LENGTHS[0]}–{REVERSE_LENGTHS[1]} words; module docstring); "
        f"seq2seq_lstm {_seq2seq_args(ctx, True)}; {settings}; beam search ranks log P(y|x) / |y|^α "
        "(models/decoding.py), the log-probability per token counts the </s>.",
        {"decoders": rows, "bootstrap_beam4_vs_greedy": boot, "model_test_bleu": summary["test_bleu"]},
        [save_figure(fig, ctx, "beam-vs-greedy.png")], rows)


@torch.no_grad()
def mean_log_prob_per_token(trainer, translations: list[str]) -> float:
    """Mean over the test sentences of log P(y </s> | x) / (|y| + 1) under the trained network: what beam
    search with α = 1 maximises."""
    from ..core.runtime import evaluating
    from ..data.translation import BOS, EOS
    from ..models.decoding import sequence_log_prob
    task, model = trainer.task, trainer.eval_model
    total = 0.0
    with evaluating(model):
        for (source, _), translation in zip(task.data.test, translations):
            src = torch.tensor([task.vocab.encode(source) + [EOS]], device=trainer.device)
            target = task.vocab.encode(translation)
            total += sequence_log_prob(model, src, target, bos=BOS, eos=EOS) / (len(target) + 1)
    return total / max(len(translations), 1)


# ---- 4. Graves' biased sampling ---------------------------------------------------------------------------------
BIASES = (0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0)      # Graves' Fig. 16 shows 0.1, 0.5, 2, 5, 10
NGRAM = 5                                            # characters per n-gram of the diversity measure
TREND = 0.8                                          # |Spearman ρ| over the biases that counts as a trend
PROMPTS, PROMPT_CHARS = 4, 30                        # samples start after the first characters of test verses
LEARNT_BPC = 3.0                                     # below: more than letter frequencies (≈ 4.1 bits) learnt
_WORD = re.compile(r"[A-Za-z]+")


def bible_excerpt(ctx: Context, characters: int) -> str:
    """The King James Bible's first `characters` characters (whole verses) in ctx.out/data, as `text:` spec."""
    from ..data.text import kjv_text
    path = Path(ctx.out) / "data" / f"kjv-{characters}.txt"
    if not path.exists():
        text = kjv_text()
        end = text.find("\n", characters)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text[:end + 1 if end != -1 else len(text)])
    return f"text:{path}"


def distinct_ngram_share(samples: list[str], n: int = NGRAM) -> float:
    """Distinct character n-grams / all n-grams, pooled over `samples` (1: no n-gram repeats; → 0: all alike)."""
    grams = [sample[i:i + n] for sample in samples for i in range(len(sample) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def known_word_share(samples: list[str], vocabulary: set[str]) -> tuple[float, int]:
    """(share of the samples' words found in `vocabulary`, words counted); a sample's last word is left out,
    the sample may have cut it short."""
    words = [word.lower() for sample in samples for word in _WORD.findall(sample)[:-1]]
    return (sum(word in vocabulary for word in words) / len(words) if words else 0.0), len(words)


@torch.no_grad()
def sample_statistics(model, prompt: torch.Tensor, drawn: torch.Tensor, bias: float) -> tuple[float, float]:
    """(mean entropy in bits of the biased next-token distribution the tokens were drawn from, mean bits per
    token of the drawn tokens under the unbiased network), by one pass over prompt + drawn tokens."""
    from ..models.language import next_token_probabilities
    tokens = torch.cat([prompt, drawn]).to(model.head.weight.device)[None]
    logits = model(tokens)[0][0, len(prompt) - 1:-1].double()
    biased = next_token_probabilities(logits, bias=bias)
    entropy = -(biased * biased.clamp_min(1e-300).log2()).sum(-1).mean().item()
    unbiased = torch.log_softmax(logits, -1).gather(1, drawn.to(logits.device)[:, None]) / math.log(2)
    return entropy, -unbiased.mean().item()


@experiment("biased-sampling", notes="003", heading="Language Modeling using LSTM",
            claim="Graves' probability bias b (Pr(k) ∝ exp(ŷ_k (1 + b))) trades diversity for regularity: as b "
                  "grows the samples of one character-level LSTM grow less diverse and more regular, until they all "
                  "look the same")
def biased_sampling(ctx: Context) -> Outcome:
    from ..core.runtime import evaluating
    from ..models.language import sample
    spec = bible_excerpt(ctx, ctx.pick(20_000, 1_000_000, 4_000_000))
    settings = dict(data=spec, level="char", epochs=ctx.pick(1, 2, 4), batch_size=ctx.pick(8, 32, 32),
                    bptt=ctx.pick(50, 100, 100), lr=3e-3, optimizer="adam", weight_decay=0.0, schedule="onecycle",
                    clip_grad=1.0, keep="last")
    summary, trainer = train_registered(ctx, "lstm_lm", "biased-sampling-lstm_lm",
                                        model_args={"hidden_size": ctx.pick(32, 256, 256)}, **settings)
    task, model = trainer.task, trainer.eval_model
    vocabulary = {word.lower() for word in _WORD.findall(task.vocab.decode(task.data.train.tolist()))}
    test_lines = [line for line in task.vocab.decode(task.data.test.tolist()).split("\n") if len(line) > PROMPT_CHARS]
    prompts = [test_lines[len(test_lines) * k // PROMPTS][:PROMPT_CHARS] for k in range(ctx.pick(2, PROMPTS, PROMPTS))]
    seeds, length = ctx.pick(2, 4, 8), ctx.pick(20, 200, 300)
    rows, examples = [], {}
    with evaluating(model):
        for bias in BIASES:
            distinct, entropies, bits, texts = [], [], [], []
            for p, prompt in enumerate(prompts):
                encoded = task.vocab.encode(prompt).long()
                drawn_texts = []
                for seed in range(seeds):
                    generator = torch.Generator().manual_seed(ctx.seed * 1_000 + p * 100 + seed)
                    drawn = sample(model, encoded, length, bias=bias, generator=generator).cpu()
                    entropy, bits_per_char = sample_statistics(model, encoded, drawn, bias)
                    entropies.append(entropy)
                    bits.append(bits_per_char)
                    drawn_texts.append(task.vocab.decode(drawn.tolist()))
                distinct.append(distinct_ngram_share(drawn_texts))
                texts.extend(drawn_texts)
            known, counted = known_word_share(texts, vocabulary)
            examples[bias] = texts[:2]
            rows.append({"bias": bias, "distinct_5gram_share": sum(distinct) / len(distinct),
                         "entropy_bits": sum(entropies) / len(entropies), "known_word_share": known,
                         "bits_per_char_unbiased": sum(bits) / len(bits), "words": counted})
    trend = {key: spearman(list(BIASES), [row[key] for row in rows])
             for key in ("distinct_5gram_share", "entropy_bits", "known_word_share", "bits_per_char_unbiased")}
    first, last = rows[0], rows[-1]
    less_diverse = (trend["distinct_5gram_share"] <= -TREND
                    and last["distinct_5gram_share"] < first["distinct_5gram_share"])
    more_regular = trend["known_word_share"] >= TREND and last["known_word_share"] > first["known_word_share"]
    learnt = summary["test_bpc"] < LEARNT_BPC
    write_text(ctx.out / "samples.txt", "".join(
        f"b = {bias}\n" + "".join(f"  {prompts[0]!r} → {text!r}\n" for text in texts) + "\n"
        for bias, texts in examples.items()))
    fig, axes = figure(1, 2)
    x = [max(b, 0.03) for b in BIASES]      # b = 0 drawn at the left edge of the log axis
    axes[0, 0].plot(x, [row["distinct_5gram_share"] for row in rows], "-o", label=f"distinct {NGRAM}-grams (share)")
    axes[0, 0].plot(x, [row["entropy_bits"] / math.log2(len(task.vocab)) for row in rows], "-s",
                    label="entropy of Pr(k) / log₂ V")
    axes[0, 0].set(xscale="log", xlabel="probability bias b (0 at the left edge)", ylabel="share", title="diversity")
    axes[0, 1].plot(x, [row["known_word_share"] for row in rows], "-o", label="words found in the training text")
    twin = axes[0, 1].twinx()
    twin.plot(x, [row["bits_per_char_unbiased"] for row in rows], "-s", color="C1", label="bits per char (unbiased)")
    twin.set_ylabel("bits per char of the samples, unbiased network")
    axes[0, 1].set(xscale="log", xlabel="probability bias b (0 at the left edge)", ylabel="share",
                   title="regularity")
    for ax in (axes[0, 0], axes[0, 1], twin):
        ax.legend(fontsize=8, loc="center left" if ax is not twin else "center right")
    return Outcome(
        verdict(less_diverse and more_regular, conclusive=learnt),
        f"From b = 0 to b = {BIASES[-1]:g}: distinct {NGRAM}-gram share {first['distinct_5gram_share']:.3f} → "
        f"{last['distinct_5gram_share']:.3f} (Spearman ρ over b {trend['distinct_5gram_share']:+.2f}), entropy of the "
        f"sampling distribution {first['entropy_bits']:.3f} → {last['entropy_bits']:.3f} bits "
        f"(ρ {trend['entropy_bits']:+.2f}); words found in the training text {first['known_word_share']:.3f} → "
        f"{last['known_word_share']:.3f} (ρ {trend['known_word_share']:+.2f}), the unbiased network's bits per "
        f"character of the samples {first['bits_per_char_unbiased']:.3f} → {last['bits_per_char_unbiased']:.3f} "
        f"(ρ {trend['bits_per_char_unbiased']:+.2f}). The network's test BPC {summary['test_bpc']:.3f}. Held when the "
        f"distinct n-gram share falls and the known-word share rises with b (|ρ| ≥ {TREND}, last below / above "
        f"first); inconclusive when the network has not learnt the text (test BPC ≥ {LEARNT_BPC}).",
        f"lstm_lm (2 × {ctx.pick(32, 256, 256)} LSTM, skip connections) on the King James Bible's first "
        f"{ctx.pick(20_000, 1_000_000, 4_000_000):,} characters, {settings}; {len(prompts)} prompts (the first "
        f"{PROMPT_CHARS} characters of test verses) × {seeds} seeds × {length} characters per bias.",
        {"biases": rows, "spearman": trend, "test_bpc": summary["test_bpc"], "prompts": prompts},
        [save_figure(fig, ctx, "biased-sampling.png")], rows)
