"""Language-model scores: Graves, "Generating Sequences With Recurrent Neural Networks", 2013,
Sec. 3.1 (notes 003, "Language Modeling using LSTM", Table 1).

Bits per character is the mean of −log₂ Pr(x_{t+1} | y_t) over the test set, i.e. the mean
cross-entropy in nats divided by ln 2; perplexity is exp of the mean cross-entropy (2 to the mean
bits per token). A character model's word perplexity is 2 to the bits per *word*: with c the mean
number of characters per word (spaces included; Graves: "about 5.6" on Penn Treebank's test set),
perplexity = 2^{c·BPC} (the notes' formula; Graves prints ≈ 2^{5.6·BPC}).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core.errors import UsageError


def _mean_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    if logits.shape[:-1] != targets.shape:
        raise UsageError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)}: logits need one more "
                         "(class) dimension than the targets")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1).long(),
                           ignore_index=ignore_index)


def bits_per_char(logits: torch.Tensor, targets: torch.Tensor, *, ignore_index: int = -100) -> float:
    """Mean −log₂ Pr(target) over every position: logits (…, V), targets (…)."""
    return float(_mean_cross_entropy(logits, targets, ignore_index)) / math.log(2)


def perplexity(logits: torch.Tensor, targets: torch.Tensor, *, ignore_index: int = -100) -> float:
    """exp(mean cross-entropy): a uniform guess over V tokens scores V."""
    return math.exp(float(_mean_cross_entropy(logits, targets, ignore_index)))


def word_perplexity_from_bpc(bpc: float, mean_word_length: float) -> float:
    """2^{c·BPC}: the per-word perplexity of a character model, c characters per word."""
    if mean_word_length <= 0:
        raise UsageError(f"mean_word_length={mean_word_length}: characters per word, > 0")
    return 2.0 ** (mean_word_length * bpc)
