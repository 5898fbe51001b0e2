"""Cloze-style reading comprehension on the engine (Hermann et al., "Teaching Machines to Read and
Comprehend", NeurIPS 2015, Sec. 3–4; notes 003, "Cloze Style Comprehension using LSTM", Table 3).

Data (data/cloze.py): `kjv-cloze` or `cnn-qa:PATH`, a document, a query with @placeholder, the
answer among the document's entities; the vocabulary (saved in model.json) keeps the training words
seen `--word-min-count` times. The readers (models/readers.py) score the E entity ids; the entities
not in the document are masked to −∞, so that the answer is chosen among the candidates.

Batches: `--batch-size` questions. Each epoch draws a permutation from (seed, epoch), cuts it into
pools of translation.POOL_BATCHES batches sorted by document length (little padding) and shuffles the batches'
order with the same generator (tasks/translation.length_sorted_batches); a resumed run rebuilds the
epoch's batches and skips those done. With several processes each takes every world-th question.

Measures: the cross-entropy of the answer over the candidates (nats; a uniform guess scores
ln |candidates|, whose mean over the validation questions is `chance_loss`) and top-1 accuracy,
the fraction answered right, Table 3's measure; the best epoch is the one of highest validation
accuracy. The test also reports Hermann et al.'s frequency baselines (data/cloze.frequency_baseline)
on the same questions, the yardstick a reader must beat.

Beside the notes' Table 3 (CNN, dev / test top-1 in %; the frequency rows are Hermann et al.'s Table 5),
what we measured on `kjv-cloze` (test top-1, val in brackets; one CPU thread on a shared 2-core
machine, batches of 32, Adam 3e-3 with a one-cycle rate — recipe kjv-cloze-reader's settings):

| model               | kjv-cloze test (val)                     | CNN dev / test |
|---------------------|------------------------------------------|----------------|
| maximum frequency   | 0.294 (0.396)                            | 30.5 / 33.2    |
| exclusive frequency | 0.426 (0.505)                            | 36.6 / 39.3    |
| attentive_reader    | 0.442 (0.583) after 2 epochs, 376 s      | 61.6 / 63.0    |
| multipass_reader    | not trained: 0.88 CPU-s a batch, 7 min an epoch  | 67.5 / 70.0 |
| singlepass_reader   | not trained: 2.5 CPU-s a batch, 21 min an epoch  | 73.3 / 74.3 |

(attentive_reader: 0.17 CPU-s a batch.) On the easy generated cloze of tests/test_cloze_task.py
(the answer follows a marker word; chance 1/3, the frequency baselines 0) each reader exceeds 0.8
in seconds. The test books are harder than the validation chapters: both baselines lose 8–10 points
there.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..core.options import at_least, option, option_group
from ..core.runtime import autocast, evaluating
from ..data.cloze import PAD, ClozeData, EncodedCloze, frequency_baseline, load_cloze_data
from .base import StepOutput, TextTask
from .plots import plot_curves
from .translation import length_sorted_batches

EVAL_BATCH = 64


@option_group("cloze comprehension")
class ClozeOptions:
    word_min_count: int = option(2, "cloze vocabulary: the training words seen at least N times, the rest read as "
                                    "<unk> (default {default})", metavar="N", check=at_least(1))


def collate(examples: list[EncodedCloze], entities: int, device) -> tuple[torch.Tensor, ...]:
    """(document (B, N), query (B, Q), segments (B, N), candidates (B, E) bool, answer (B,)); padding PAD,
    segments −1 there."""
    def pad(rows, value):
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=value).to(device)
    candidates = torch.zeros(len(examples), entities, dtype=torch.bool)
    for row, example in enumerate(examples):
        candidates[row, example.candidates] = True
    return (pad([e.document for e in examples], PAD), pad([e.query for e in examples], PAD),
            pad([e.segments for e in examples], -1), candidates.to(device),
            torch.tensor([e.answer for e in examples], device=device))


def answer_loss(logits: torch.Tensor, answers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ −ln P(answer) over the candidates, number answered right), in float32."""
    logits = logits.float()
    return F.cross_entropy(logits, answers, reduction="sum"), (logits.argmax(1) == answers).sum()


@torch.no_grad()
def cloze_measures(model: nn.Module, encoded: list[EncodedCloze], entities: int, device,
                   batch_size: int = EVAL_BATCH) -> dict:
    """loss (mean nats), top1 and n of a split; float32, no autocast, so that `eval` repeats validation."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].document))   # little padding
    nats = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    with evaluating(model):
        for start in range(0, len(order), batch_size):
            document, query, segments, candidates, answers = collate(
                [encoded[i] for i in order[start:start + batch_size]], entities, device)
            total, right = answer_loss(model(document, query, candidates, segments), answers)
            nats += total.double()
            correct += right
    n = max(len(encoded), 1)
    return {"loss": nats.item() / n, "top1": correct.item() / n, "n": len(encoded)}


class ClozeTask(TextTask):
    """Answer cloze queries from a document: see the module docstring."""

    name = "cloze"
    default_data = "kjv-cloze"
    record_keys = ("loss", "top1")
    monitor, monitor_mode = "top1", "max"

    # ---- data and network ---------------------------------------------------------------------
    def load_data(self) -> None:
        cfg = self.cfg
        self.data: ClozeData = load_cloze_data(cfg.data, data_dir=cfg.data_dir, min_count=cfg.word_min_count)
        self.data.train = self.limit_examples(self.data.train)
        if cfg.test_limit:
            self.data.test = self.data.test[:cfg.test_limit]
        if len(self.data.train) < cfg.batch_size * self.world:
            raise UsageError(f"--batch-size {cfg.batch_size}: {cfg.data} has only {len(self.data.train)} training "
                             "questions; lower it")
        self.encoded_train, self.encoded_val = self.data.encode("train"), self.data.encode("val")
        self.lengths = [len(e.document) for e in self.encoded_train]
        self.input_size = (1, round(sum(self.lengths) / len(self.lengths)))   # the mean document, for the MACs

    @property
    def train_size(self) -> int:
        return len(self.encoded_train)

    @property
    def chance_loss(self) -> float:
        """The mean of ln |candidates| over the validation questions: a uniform guess among the candidates."""
        return sum(math.log(max(len(e.candidates), 1)) for e in self.encoded_val) / max(len(self.encoded_val), 1)

    def describe_data(self) -> str:
        data = self.data
        return (f"{len(data.train):,} train / {len(data.val):,} val / {len(data.test):,} test questions, vocabulary "
                f"{len(data.vocab):,}, {data.entities} entity ids")

    def build_model(self, **builder_kwargs) -> nn.Module:
        self.model_kwargs = {"num_classes": self.data.entities, "vocab_size": len(self.data.vocab), **builder_kwargs}
        return self.build_network(self.model_kwargs)

    def input_batches(self, batch_size: int, epoch: int = 0):
        for batch in self.train_batches(epoch, 0):
            yield batch[0]

    # ---- training -----------------------------------------------------------------------------
    def train_batches(self, epoch: int, start_step: int):
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        batches = length_sorted_batches(self.lengths, self.cfg.batch_size, generator)
        for indices in batches[start_step:]:
            yield collate([self.encoded_train[i] for i in indices], self.data.entities, self.device)

    def training_step(self, batch, phase: str, generator: torch.Generator) -> StepOutput:
        document, query, segments, candidates, answers = batch
        with autocast(self.device, self.amp):
            logits = self.net(document, query, candidates, segments)
        nats, correct = answer_loss(logits, answers)
        count = len(answers)
        return StepOutput({"loss": nats / count}, {"loss": nats.detach().double(), "top1": correct.double()}, count)

    # ---- evaluation and the run directory ------------------------------------------------------
    def evaluate(self, model: nn.Module, split: str) -> dict:
        encoded = self.encoded_val if split == "val" else self.data.encode(split)
        return cloze_measures(model, encoded, self.data.entities, self.device)

    def test(self, model: nn.Module, out, title: str) -> dict:
        test = self.evaluate(model, "test")
        result = {"test_top1": test["top1"], "test_loss": test["loss"], "test_n": test["n"],
                  "test_max_frequency_top1": frequency_baseline(self.data.test),
                  "test_exclusive_frequency_top1": frequency_baseline(self.data.test, exclusive=True)}
        self.log(f"test top1 {result['test_top1']:.4f}  loss {result['test_loss']:.4f} ({test['n']} questions; "
                 f"frequency baselines {result['test_max_frequency_top1']:.4f} maximum, "
                 f"{result['test_exclusive_frequency_top1']:.4f} exclusive)")
        return result

    def resolved(self) -> dict:
        data = self.data
        return {"vocab_size": len(data.vocab), "entities": data.entities, "train_questions": len(data.train),
                "val_questions": len(data.val), "test_questions": len(data.test)}

    def model_meta(self) -> dict:
        cfg = self.cfg
        return {"vocab": self.data.vocab.to_json(), "entities": self.data.entities, "data": cfg.data,
                "data_args": {"min_count": cfg.word_min_count}, "eval": {"channels_last": False}}

    def plot_curves(self, history: list[dict], path) -> None:
        plot_curves(history, path, metric="top1", metric_label="accuracy (answer among the candidates)",
                    loss_label="cross-entropy (nats per question)")
