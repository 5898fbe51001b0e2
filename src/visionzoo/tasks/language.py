"""Language modelling: predict every next token of a text (Graves, "Generating Sequences With
Recurrent Neural Networks", 2013, §2–3: the loss L(x) = −Σ_t log P(x_{t+1} | y_t) of eq. 7 and
Table 1's measures; the notes' "Language Modeling using LSTM").

Batches. The training split's token stream is cut into B = `--batch-size` parallel streams (rows of
(N − 1) // B + 1 tokens, each row's last token the next row's first) read in consecutive windows of `--bptt` T tokens: step s feeds tokens
[sT, sT + T) of every stream and predicts tokens [sT + 1, sT + T + 1). The network's recurrent
state is carried from one window to the next, detached from the graph (truncated back-propagation
through time), and starts from zero at each epoch. The carried state is part of the task's
checkpoint state (`state_dict`), so `--resume` continues the run exactly. With several processes
each takes every world-th stream and carries its own streams' state; such a run, resumed mid-epoch,
restarts the carried state from zero (said in its log).

Measures (per split): the loss, mean cross-entropy in nats per token; bits per character
BPC = (Σ −log₂ P) / characters, for either level; perplexity per word 2^((Σ −log₂ P) / words), the
notes' 2^(c·BPC) with c characters per word at the character level (data/text.py counts both), so
that the character- and word-level rows of Table 1 compare. The sum is over the split's every token:
the first token of each stream has no prediction, so it counts at the mean −log₂ P of the others.
Validation and test read the split as EVAL_STREAMS parallel streams, state carried through them.
`--dynamic-eval LR` tests Graves' dynamic evaluation (§3.1, models/language.dynamic_evaluate): the
test text read as one stream, each window scored, then one SGD step of rate LR on it, so that the
network adapts to the recent text. `--weight-noise σ` is handed to the network's builder. The test
also writes SAMPLE_LENGTH tokens sampled after the test text's first SAMPLE_PROMPT tokens (seeded)
to sample.txt. Label smoothing is not used: the loss is the log-likelihood of the paper.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..core.io import write_text
from ..core.options import at_least, option, option_group, positive
from ..core.runtime import autocast, evaluating
from ..data.datasets import SPLITS
from ..data.text import LEVELS, Vocabulary, load_text_data
from ..layers.recurrent import detach_state
from ..models.language import dynamic_evaluate, sample
from .base import StepOutput, TextTask
from .plots import plot_curves

EVAL_STREAMS = 32                     # parallel streams of a validation or test pass
SAMPLE_PROMPT, SAMPLE_LENGTH, SAMPLE_SEED = 50, 500, 0


@option_group("language modelling")
class LanguageOptions:
    level: str = option("char", "tokens: characters or words (default {default})", choices=LEVELS)
    bptt: int = option(100, "truncated BPTT: window of T tokens, the state carried between windows "
                            "(default {default})", metavar="T", check=positive)
    weight_noise: float = option(0.0, "σ of Gaussian noise added to the weights at every step (Graves' "
                                      "regularisation; default {default}: none)", metavar="σ", check=at_least(0))
    dynamic_eval: float | None = option(None, "test by dynamic evaluation: after each test window, one SGD step "
                                              "of rate LR on it (Graves §3.1)", metavar="LR", check=positive)


def cross_entropy_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ −ln P(target) over every position of (B, T, V) logits, in float32."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum")


def stream_matrix(tokens: torch.Tensor, streams: int) -> torch.Tensor:
    """A token stream as `streams` rows of L + 1 tokens, L = (n − 1) // streams: row i holds tokens
    [iL, iL + L], so that each row's last token is the next row's first and the rows predict tokens
    1 … streams·L of the stream, each once (fewer than `streams` tokens at the end go unread)."""
    length = (len(tokens) - 1) // streams
    return tokens[:streams * length + 1].unfold(0, length + 1, length)


def windows(matrix: torch.Tensor, bptt: int):
    """(inputs, targets) windows of at most `bptt` columns covering every row's next-token predictions."""
    for start in range(0, matrix.shape[1] - 1, bptt):
        end = min(start + bptt, matrix.shape[1] - 1)
        yield matrix[:, start:end], matrix[:, start + 1:end + 1]


def language_measures(nats: float, count: int, tokens: int, chars: int, words: int) -> dict:
    """loss (nats per token), BPC and perplexity per word from Σ −ln P over `count` predicted tokens
    of a split of `tokens` tokens, `chars` characters and `words` words (module docstring)."""
    bits_per_token = nats / max(count, 1) / math.log(2)
    return {"loss": nats / max(count, 1), "bpc": bits_per_token * tokens / chars,
            "perplexity": 2 ** (bits_per_token * tokens / words), "n": count}


def stream_loss(model: nn.Module, tokens: torch.Tensor, *, bptt: int, streams: int, device) -> tuple[float, int]:
    """(Σ −ln P, predicted tokens) of `tokens` read as `streams` parallel streams, state carried; in
    float32 (no autocast), so that `visionzoo eval` repeats the run's validation exactly."""
    matrix = stream_matrix(tokens, max(1, min(streams, (len(tokens) - 1) // 2))).to(device)
    total, count, state = torch.zeros((), dtype=torch.float64, device=device), 0, None
    with torch.no_grad(), evaluating(model):
        for inputs, targets in windows(matrix, bptt):
            logits, state = model(inputs, state)
            total += cross_entropy_sum(logits, targets).double()
            count += targets.numel()
    return total.item(), count


def dynamic_measures(model: nn.Module, tokens: torch.Tensor, lr: float, *, bptt: int, chars: int, words: int) -> dict:
    """`language_measures` of Graves' dynamic evaluation (models/language.dynamic_evaluate) of `tokens`, one
    stream of `chars` characters and `words` words: the run's test and `visionzoo eval --dynamic-eval` alike."""
    mean = dynamic_evaluate(model, tokens, lr, bptt=bptt)
    return language_measures(mean * (len(tokens) - 1), len(tokens) - 1, len(tokens), chars, words)


class LanguageTask(TextTask):
    """Next-token prediction on a text: truncated BPTT with carried state, BPC and perplexity."""

    name = "language"
    default_data = "kjv"
    record_keys = ("loss", "bpc")
    monitor, monitor_mode = "loss", "min"

    def __init__(self, cfg, *, device, rank, world, channels_last, amp, log):
        super().__init__(cfg, device=device, rank=rank, world=world, channels_last=channels_last, amp=amp, log=log)
        self.state = None   # the recurrent state carried from window to window

    # ---- data and network ---------------------------------------------------------------------
    def load_data(self) -> None:
        cfg = self.cfg
        # a stream's examples are its lines: --train-limit and --test-limit keep a split's first lines
        self.data = load_text_data(cfg.data, data_dir=cfg.data_dir, level=cfg.level,
                                   line_limits={"train": cfg.train_limit, "test": cfg.test_limit})
        self.vocab: Vocabulary = self.data.vocab
        self.input_size = (1, cfg.bptt)   # the registry's (channels, length): one token stream
        if len(self.data.train) - 1 < cfg.batch_size * cfg.bptt:
            raise UsageError(f"--batch-size {cfg.batch_size} × --bptt {cfg.bptt}: the {len(self.data.train)} "
                             f"training tokens of {cfg.data} do not fill one window of every stream; lower either")
        self.streams = stream_matrix(self.data.train, cfg.batch_size).to(self.device)
        self.windows = (self.streams.shape[1] - 1) // cfg.bptt   # full windows; the rest of a row is unread
        # the bits of a training token per character: BPC of the training loss
        self.train_chars_per_token = self.data.chars["train"] / len(self.data.train)

    @property
    def train_size(self) -> int:
        return self.windows * self.cfg.batch_size   # the engine's steps per epoch: the windows

    @property
    def chance_loss(self) -> float:
        return math.log(len(self.vocab))

    def describe_data(self) -> str:
        tokens = " / ".join(f"{len(self.data.split(s)):,} {s}" for s in SPLITS)
        return (f"{tokens} {self.cfg.level}s, vocabulary {len(self.vocab):,}, {self.cfg.batch_size} streams × "
                f"{self.windows} windows of {self.cfg.bptt}")

    def build_model(self, **builder_kwargs) -> nn.Module:
        noise = {"weight_noise": self.cfg.weight_noise} if self.cfg.weight_noise else {}
        self.model_kwargs = {"num_classes": len(self.vocab), **noise, **builder_kwargs}
        return self.build_network(self.model_kwargs, options="--model-arg or --weight-noise")

    def input_batches(self, batch_size: int, epoch: int = 0):
        rows = stream_matrix(self.data.train, batch_size).to(self.device)
        for inputs, _ in windows(rows, self.cfg.bptt):
            yield inputs

    # ---- training -----------------------------------------------------------------------------
    def train_batches(self, epoch: int, start_step: int):
        if start_step == 0:
            self.state = None        # each epoch reads the streams from their start
        bptt = self.cfg.bptt
        for step in range(start_step, self.windows):
            start = step * bptt
            yield self.streams[:, start:start + bptt], self.streams[:, start + 1:start + bptt + 1]

    def training_step(self, batch, phase: str, generator: torch.Generator) -> StepOutput:
        inputs, targets = batch
        with autocast(self.device, self.amp):
            logits, state = self.net(inputs, self.state)
        nats = cross_entropy_sum(logits, targets)
        count = targets.numel()
        self.state = detach_state(state)
        total = nats.detach().double()
        return StepOutput({"loss": nats / count},
                          {"loss": total, "bpc": total / math.log(2) / self.train_chars_per_token}, count)

    def state_dict(self) -> dict:
        # one process: its state is every stream's; several: each holds its own streams' only
        return {"carried": self.state} if self.state is not None and self.world == 1 else {}

    def load_state_dict(self, state: dict) -> None:
        carried = state.get("carried")
        if carried is None and self.world > 1:
            self.log("the carried recurrent state restarts from zero (a run of several processes keeps none)")
        self.state = None if carried is None else _to_device(carried, self.device)

    # ---- evaluation and the run directory ------------------------------------------------------
    def measures(self, split: str, nats: float, count: int) -> dict:
        tokens = len(self.data.split(split))
        return language_measures(nats, count, tokens, self.data.chars[split], self.data.words[split])

    def evaluate(self, model: nn.Module, split: str) -> dict:
        nats, count = stream_loss(model, self.data.split(split), bptt=self.cfg.bptt, streams=EVAL_STREAMS,
                                  device=self.device)
        return self.measures(split, nats, count)

    def test(self, model: nn.Module, out, title: str) -> dict:
        test = self.evaluate(model, "test")
        result = {"test_loss": test["loss"], "test_bpc": test["bpc"], "test_perplexity": test["perplexity"],
                  "test_n": test["n"]}
        if self.cfg.dynamic_eval:
            # one stream, scored window by window before learning from it; on a copy of the network
            dynamic = dynamic_measures(model, self.data.test, self.cfg.dynamic_eval, bptt=self.cfg.bptt,
                                       chars=self.data.chars["test"], words=self.data.words["test"])
            result = {**{f"{key}_static": value for key, value in result.items() if key != "test_n"},
                      "test_loss": dynamic["loss"], "test_bpc": dynamic["bpc"],
                      "test_perplexity": dynamic["perplexity"], "test_n": dynamic["n"], "dynamic_eval": True}
        self.log(f"test bpc {result['test_bpc']:.4f}  perplexity {result['test_perplexity']:.2f}  loss "
                 f"{result['test_loss']:.4f}  ({result['test_n']:,} {self.cfg.level}s"
                 f"{', dynamic evaluation' if self.cfg.dynamic_eval else ''})")
        if out is not None:
            prompt = self.data.test[:SAMPLE_PROMPT]
            text = sample_text(model, self.vocab, prompt, SAMPLE_LENGTH, seed=SAMPLE_SEED, device=self.device)
            write_text(out / "sample.txt", f"{title}, seed {SAMPLE_SEED}, after the test text's first "
                                           f"{len(prompt)} {self.cfg.level}s:\n{self.vocab.decode(prompt)}"
                                           f"{text}\n")
        return result

    def resolved(self) -> dict:
        return {"level": self.cfg.level, "vocab_size": len(self.vocab), "streams": self.cfg.batch_size,
                "windows_per_epoch": self.windows,
                **{f"{split}_tokens": len(self.data.split(split)) for split in SPLITS},
                **{f"{split}_chars": self.data.chars[split] for split in SPLITS}}

    def model_meta(self) -> dict:
        cfg = self.cfg
        # no input_size: model.json's is an image's (channels, height, width); a window is `bptt` tokens
        return {"vocab": self.vocab.to_json(), "level": cfg.level, "data": cfg.data, "data_args": {"level": cfg.level},
                "bptt": cfg.bptt, "eval": {"channels_last": False}}

    def plot_curves(self, history: list[dict], path) -> None:
        plot_curves(history, path, metric="bpc", metric_label="bits per character",
                    loss_label="cross-entropy (nats per token)")


def _to_device(state, device):
    if isinstance(state, torch.Tensor):
        return state.to(device)
    return type(state)(_to_device(part, device) for part in state)


def sample_text(model: nn.Module, vocab: Vocabulary, prompt: torch.Tensor, length: int, *, seed: int, device,
                temperature: float = 1.0, bias: float = 0.0) -> str:
    """`length` tokens the network draws after `prompt` (int64 indices), decoded (Graves §5.4: softmax of
    the logits × (1 + bias) / temperature)."""
    drawn = sample(model, prompt.to(device), length, temperature=temperature, bias=bias,
                   generator=torch.Generator().manual_seed(seed))
    return vocab.decode(drawn.tolist())
