"""Machine translation on the engine: teacher-forced training, BLEU by greedy and beam decoding
(Sutskever et al. 2014; Bahdanau et al. 2015; Vaswani et al. 2017, Sec. 5–6; notes 003).

Data (data/translation.py): sentence pairs, a joint SentencePiece vocabulary of `--vocab-size`
pieces learnt from the training split (saved in model.json). Training pairs longer than
`--max-tokens` pieces on either side are left out of training (not of validation or test).

Batches: `--batch-size` sentence pairs. Each epoch draws a permutation from (seed, epoch), cuts it
into pools of POOL_BATCHES batches, sorts each pool by length (target, then source) so that a batch
holds sentences of similar length and little padding, and shuffles the batches' order with the same
generator; a resumed run rebuilds the epoch's batches and skips those done. With several processes
each takes every world-th pair of a batch.

Loss: cross-entropy of every target token given the source and the target prefix (teacher forcing:
input <s> y₁ … y_{T−1}, output y₁ … y_T </s>), padding ignored, with label smoothing ε =
`--label-smoothing` (Vaswani Sec. 5.4, ε_ls = 0.1; Szegedy et al. 2016) on the optimised loss. The
recorded loss, train and val, is the unsmoothed negative log-likelihood per target token (its
exponential the perplexity), ln V for a uniform guess.

Validation each epoch: that loss and the corpus BLEU (metrics/bleu.py, sacrebleu's definition) of
greedy translations of the validation split; the best epoch is the one of highest BLEU. Test: BLEU of
beam search (`--beam` K, length normalisation α = `--length-penalty`, models/decoding.py) and of greedy
decoding (the notes' "beam > greedy"), BLEU by source length in words (Bahdanau's Fig. 2, the bins of
LENGTH_BINS, bleu_by_length.png) with BLEU on sources over LONG_SENTENCE words, every test
translation in translations.txt, and for a network that exposes its attention the alignments of
ALIGNMENT_EXAMPLES test sentences (Bahdanau's Fig. 3, alignments.png).
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..core.figures import save_figure, subplots
from ..core.io import write_text
from ..core.options import at_least, option, option_group, positive
from ..core.runtime import autocast, evaluating
from ..data.translation import BOS, EOS, PAD, ParallelData, SubwordVocabulary, encode_pairs, load_parallel, pad_batch
from ..metrics.bleu import bleu
from ..models.decoding import beam_search, greedy_decode
from .base import StepOutput, TextTask
from .plots import plot_curves

POOL_BATCHES = 50                        # batches sorted by length together
DECODE_BATCH = 100                       # sentences decoded at once
LENGTH_BINS = (0, 10, 20, 30, 40, 50, 60)  # source words: [0, 10), [10, 20), …, [60, ∞)
LONG_SENTENCE = 30                       # "sentences over 30 words" (issue 25's target; Bahdanau's Fig. 2)
ALIGNMENT_EXAMPLES = 4


@option_group("translation")
class TranslationOptions:
    vocab_size: int = option(8000, "joint SentencePiece vocabulary of source and target (default {default})",
                             check=at_least(8))
    max_tokens: int = option(128, "train on pairs of at most N subword tokens a side (default {default})",
                             metavar="N", check=positive)
    beam: int = option(4, "beam width K of the final test's beam search (default {default}; 1 = keep one "
                          "hypothesis)", metavar="K", check=positive)
    length_penalty: float = option(1.0, "α: beam search ranks log P(y|x) / |y|^α (default {default}: mean "
                                        "log-probability per token; 0: none)", metavar="α", check=at_least(0))


def translation_loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ label-smoothed cross-entropy, Σ −ln P(target)) over the non-padding targets, in float32."""
    flat, wanted = logits.float().flatten(0, 1), targets.flatten()
    nll = F.cross_entropy(flat, wanted, ignore_index=PAD, reduction="sum")
    if not smoothing:
        return nll, nll
    return F.cross_entropy(flat, wanted, ignore_index=PAD, reduction="sum", label_smoothing=smoothing), nll


def length_sorted_batches(lengths: list[tuple[int, int]], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Index batches of `batch_size` (the last partial one dropped), pools sorted by length (module docstring)."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    batches = []
    pool = batch_size * POOL_BATCHES
    for start in range(0, len(order) - batch_size + 1, pool):
        members = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches.extend(members[i:i + batch_size] for i in range(0, len(members) - batch_size + 1, batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


@torch.no_grad()
def teacher_forced_loss(model: nn.Module, encoded, device, batch_size: int = DECODE_BATCH) -> tuple[float, int]:
    """(Σ −ln P over every target token, their count) of encoded (source, target) pairs; float32, no autocast."""
    total, count = 0.0, 0
    with evaluating(model):
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start:start + batch_size]
            src, tgt = pad_batch([s for s, _ in chunk], device), pad_batch([t for _, t in chunk], device)
            _, nll = translation_loss(model(src, tgt[:, :-1]), tgt[:, 1:], 0.0)
            total += nll.item()
            count += int((tgt[:, 1:] != PAD).sum())
    return total, count


@torch.no_grad()
def translate(models, vocab: SubwordVocabulary, sources: list[str], *, beam: int, alpha: float, device,
              batch_size: int = DECODE_BATCH) -> list[str]:
    """Detokenised translations of `sources` by one network or an ensemble (a list); beam 0 = greedy."""
    members = models if isinstance(models, (list, tuple)) else [models]
    encoded = [ids + [EOS] for ids in vocab.processor.encode(list(sources))]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))   # similar lengths decode together
    outputs: list[str] = [""] * len(encoded)
    with contextlib.ExitStack() as stack:
        for member in members:
            stack.enter_context(evaluating(member))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            src = pad_batch([encoded[i] for i in chunk], device)
            if beam:
                hypotheses = beam_search(members, src, bos=BOS, eos=EOS, pad=PAD, beam=beam, alpha=alpha)
            else:
                hypotheses = greedy_decode(members, src, bos=BOS, eos=EOS, pad=PAD)
            for i, tokens in zip(chunk, hypotheses):
                outputs[i] = vocab.decode(tokens)
    return outputs


def bleu_by_length(sources: list[str], hypotheses: list[str], references: list[str]) -> dict[str, dict]:
    """Per LENGTH_BINS bin of source words: {"bleu", "n"} (empty bins left out)."""
    bins: dict[str, tuple[list[str], list[str]]] = {}
    for source, hypothesis, reference in zip(sources, hypotheses, references):
        words = len(source.split())
        low = max(edge for edge in LENGTH_BINS if edge <= words)
        high = next((edge for edge in LENGTH_BINS if edge > words), None)
        key = f"{low}-{high - 1}" if high is not None else f"{low}+"
        bins.setdefault(key, ([], []))
        bins[key][0].append(hypothesis)
        bins[key][1].append(reference)
    ordered = sorted(bins, key=lambda key: int(key.split("-")[0].rstrip("+")))
    return {key: {"bleu": bleu(*bins[key]), "n": len(bins[key][0])} for key in ordered}


class TranslationTask(TextTask):
    """Sentence-pair translation: see the module docstring."""

    name = "translation"
    default_data = "bible-en-es"
    record_keys = ("loss",)
    monitor, monitor_mode = "bleu", "max"
    val_keys = ("bleu",)

    # ---- data and network ---------------------------------------------------------------------
    def load_data(self) -> None:
        cfg = self.cfg
        self.data: ParallelData = load_parallel(cfg.data, cfg.data_dir)
        self.data.train = self.limit_examples(self.data.train)
        if cfg.test_limit:
            self.data.test = self.data.test[:cfg.test_limit]
        self.vocab = SubwordVocabulary.train([side for pair in self.data.train for side in pair], cfg.vocab_size)
        encoded = encode_pairs(self.data.train, self.vocab)
        self.encoded_train = [(s, t) for s, t in encoded if len(s) <= cfg.max_tokens + 1 and len(t) <= cfg.max_tokens + 2]
        self.encoded_val = encode_pairs(self.data.val, self.vocab)
        self.dropped = len(encoded) - len(self.encoded_train)
        if len(self.encoded_train) < cfg.batch_size * self.world:
            raise UsageError(f"--batch-size {cfg.batch_size}: {cfg.data} has only {len(self.encoded_train)} training "
                             "pairs; lower it")
        self.lengths = [(len(t), len(s)) for s, t in self.encoded_train]
        self.input_size = (1, max(len(s) for s, _ in self.encoded_train))

    @property
    def train_size(self) -> int:
        return len(self.encoded_train)

    @property
    def chance_loss(self) -> float:
        return math.log(len(self.vocab))

    def describe_data(self) -> str:
        data = self.data
        return (f"{len(self.encoded_train):,} train / {len(data.val):,} val / {len(data.test):,} test sentence pairs "
                f"({data.source_language}→{data.target_language}; {self.dropped} over {self.cfg.max_tokens} tokens "
                f"left out), joint subword vocabulary {len(self.vocab):,}")

    def build_model(self, **builder_kwargs) -> nn.Module:
        self.model_kwargs = {"num_classes": len(self.vocab), **builder_kwargs}
        return self.build_network(self.model_kwargs)

    def input_batches(self, batch_size: int, epoch: int = 0):
        for src, _ in self.train_batches(epoch, 0):
            yield src

    # ---- training -----------------------------------------------------------------------------
    def train_batches(self, epoch: int, start_step: int):
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        batches = length_sorted_batches(self.lengths, self.cfg.batch_size, generator)
        for indices in batches[start_step:]:
            pairs = [self.encoded_train[i] for i in indices]
            yield pad_batch([s for s, _ in pairs], self.device), pad_batch([t for _, t in pairs], self.device)

    def prepare(self, batch, generator: torch.Generator):
        if self.world == 1:
            return batch
        src, tgt = self.shard(*batch)
        # this process's pairs may be shorter than the batch's longest: drop the all-padding columns
        return src[:, :int((src != PAD).sum(1).max())], tgt[:, :int((tgt != PAD).sum(1).max())]

    def training_step(self, batch, phase: str, generator: torch.Generator) -> StepOutput:
        src, tgt = batch
        with autocast(self.device, self.amp):
            logits = self.net(src, tgt[:, :-1])
        smoothed, nll = translation_loss(logits, tgt[:, 1:], self.cfg.label_smoothing)
        count = int((tgt[:, 1:] != PAD).sum())
        return StepOutput({"loss": smoothed / count}, {"loss": nll.detach().double()}, count)

    # ---- evaluation and the run directory ------------------------------------------------------
    def evaluate(self, model: nn.Module, split: str) -> dict:
        pairs = self.data.split(split)
        encoded = self.encoded_val if split == "val" else encode_pairs(pairs, self.vocab)
        nats, count = teacher_forced_loss(model, encoded, self.device)
        hypotheses = translate(model, self.vocab, [s for s, _ in pairs], beam=0, alpha=0.0, device=self.device)
        return {"loss": nats / max(count, 1), "bleu": bleu(hypotheses, [t for _, t in pairs]), "n": len(pairs)}

    def test(self, model: nn.Module, out, title: str) -> dict:
        cfg, pairs = self.cfg, self.data.test
        sources, references = [s for s, _ in pairs], [t for _, t in pairs]
        nats, count = teacher_forced_loss(model, encode_pairs(pairs, self.vocab), self.device)
        greedy = translate(model, self.vocab, sources, beam=0, alpha=0.0, device=self.device)
        searched = translate(model, self.vocab, sources, beam=cfg.beam, alpha=cfg.length_penalty, device=self.device)
        by_length = bleu_by_length(sources, searched, references)
        long = [i for i, source in enumerate(sources) if len(source.split()) > LONG_SENTENCE]
        result = {"test_bleu": bleu(searched, references), "test_bleu_greedy": bleu(greedy, references),
                  "test_loss": nats / max(count, 1), "test_n": len(pairs), "beam": cfg.beam,
                  "length_penalty": cfg.length_penalty,
                  f"test_bleu_over_{LONG_SENTENCE}_words": bleu([searched[i] for i in long],
                                                                 [references[i] for i in long]) if long else None,
                  f"test_n_over_{LONG_SENTENCE}_words": len(long), "test_bleu_by_length": by_length}
        self.log(f"test BLEU {result['test_bleu']:.2f} (beam {cfg.beam}), {result['test_bleu_greedy']:.2f} greedy, "
                 f"loss {result['test_loss']:.4f} ({len(pairs)} sentence pairs)")
        if out is not None:
            write_text(out / "translations.txt", "".join(f"source\t{s}\nreference\t{r}\nbeam {cfg.beam}\t{h}\n\n"
                                                         for s, r, h in zip(sources, references, searched)))
            plot_bleu_by_length(by_length, out / "bleu_by_length.png", title)
            if hasattr(model, "alignments"):
                examples = sorted(range(len(pairs)), key=lambda i: len(sources[i].split()))
                chosen = [examples[len(examples) * (k + 1) // (ALIGNMENT_EXAMPLES + 1)] for k in range(ALIGNMENT_EXAMPLES)]
                plot_alignments(model, self.vocab, [sources[i] for i in chosen], [searched[i] for i in chosen],
                                out / "alignments.png", self.device)
        return result

    def resolved(self) -> dict:
        return {"vocab_size": len(self.vocab), "train_pairs": len(self.encoded_train), "val_pairs": len(self.data.val),
                "test_pairs": len(self.data.test), "dropped_long_pairs": self.dropped,
                "source_language": self.data.source_language, "target_language": self.data.target_language}

    def model_meta(self) -> dict:
        cfg = self.cfg
        return {"vocab": self.vocab.to_json(), "data": cfg.data, "data_args": {}, "beam": cfg.beam,
                "length_penalty": cfg.length_penalty, "source_language": self.data.source_language,
                "target_language": self.data.target_language, "eval": {"channels_last": False}}

    def plot_curves(self, history: list[dict], path) -> None:
        plot_curves(history, path, metric="bleu", metric_label="BLEU (greedy)",
                    loss_label="cross-entropy (nats per target token)")


def plot_bleu_by_length(by_length: dict[str, dict], path, title: str) -> None:
    """Bahdanau's Fig. 2: BLEU of the test translations against the source sentence's length."""
    fig, ax = subplots(figsize=(6, 4))
    keys = list(by_length)
    ax.plot(range(len(keys)), [by_length[k]["bleu"] for k in keys], "-o")
    ax.set_xticks(range(len(keys)), [f"{k}\n(n={by_length[k]['n']})" for k in keys], fontsize=8)
    ax.set(xlabel="source sentence length (words)", ylabel="BLEU", title=title)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_alignments(model: nn.Module, vocab: SubwordVocabulary, sources: list[str], translations: list[str],
                    path, device) -> None:
    """Bahdanau's Fig. 3: the attention weight α_ij of source piece j for output piece i, one panel a sentence."""
    fig, axes = subplots(1, len(sources), figsize=(5 * len(sources), 5), squeeze=False)
    with evaluating(model):
        for ax, source, translation in zip(axes[0], sources, translations):
            src = torch.tensor([vocab.encode(source) + [EOS]], device=device)
            out = vocab.encode(translation) + [EOS]
            weights = model.alignments(src, torch.tensor([[BOS, *out[:-1]]], device=device))[0].float().cpu().numpy()
            ax.imshow(weights, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks(range(src.shape[1]), [*vocab.pieces(source), "</s>"], rotation=90, fontsize=6)
            ax.set_yticks(range(len(out)), [*(vocab.processor.id_to_piece(i) for i in out[:-1]), "</s>"], fontsize=6)
    save_figure(fig, path)
