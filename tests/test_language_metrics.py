"""metrics/language.py: bits per character and perplexity by their definitions and against torchmetrics,
and the notes' word perplexity 2^{c·BPC} against Graves' Table 1 (Penn Treebank)."""
import math

import pytest
import torch
from torchmetrics.text import Perplexity

from visionzoo.core.errors import UsageError
from visionzoo.metrics import bits_per_char, perplexity, word_perplexity_from_bpc

# Graves 2013, Table 1 (the notes' copy): input, regularisation, dynamic, BPC, perplexity.
GRAVES_TABLE_1 = [
    ("char", "none", False, 1.32, 167), ("char", "none", True, 1.29, 148),
    ("char", "weight noise", False, 1.27, 140), ("char", "weight noise", True, 1.24, 124),
    ("char", "adapt. wt. noise", False, 1.26, 133), ("char", "adapt. wt. noise", True, 1.24, 122),
    ("word", "none", False, 1.27, 138), ("word", "none", True, 1.25, 126),
    ("word", "weight noise", False, 1.25, 126), ("word", "weight noise", True, 1.23, 117),
]
# "the average word length on the test set is about 5.6 characters" (Graves Sec. 3.1)
PENN_MEAN_WORD_LENGTH = 5.6


def test_bpc_is_mean_negative_log2_probability_of_the_targets():
    torch.manual_seed(0)
    logits, targets = torch.randn(3, 7, 11), torch.randint(0, 11, (3, 7))
    log2_p = torch.log_softmax(logits.double(), -1).gather(-1, targets[..., None]).squeeze(-1) / math.log(2)
    assert bits_per_char(logits, targets) == pytest.approx(float(-log2_p.mean()), rel=1e-6)
    # a uniform guess over V symbols costs log₂ V bits and has perplexity V
    uniform = torch.zeros(4, 5, 32)
    assert bits_per_char(uniform, torch.randint(0, 32, (4, 5))) == pytest.approx(5.0)
    assert perplexity(uniform, torch.zeros(4, 5, dtype=torch.long)) == pytest.approx(32.0)


def test_perplexity_equals_torchmetrics_and_two_to_the_bits():
    torch.manual_seed(1)
    logits, targets = torch.randn(2, 9, 13), torch.randint(0, 13, (2, 9))
    targets[0, :2] = -100                            # ignored positions count in neither
    reference = Perplexity(ignore_index=-100)(logits, targets)
    assert perplexity(logits, targets) == pytest.approx(float(reference), rel=1e-5)
    assert perplexity(logits, targets) == pytest.approx(2 ** bits_per_char(logits, targets), rel=1e-6)


def test_word_perplexity_is_two_to_the_bits_per_word():
    assert word_perplexity_from_bpc(1.0, 5.0) == 32.0
    assert word_perplexity_from_bpc(0.0, 5.6) == 1.0
    with pytest.raises(UsageError, match="mean_word_length"):
        word_perplexity_from_bpc(1.2, 0)
    with pytest.raises(UsageError, match="one more"):
        bits_per_char(torch.zeros(3, 4), torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("row", GRAVES_TABLE_1, ids=lambda r: f"{r[0]}-{r[1]}-{'dyn' if r[2] else 'static'}")
def test_graves_table_1_is_consistent_with_two_to_the_c_bpc(row):
    """Every printed perplexity is 2^{5.6·BPC} for a BPC that rounds to the printed one (BPC has two
    decimals, perplexity none: only the BPC's rounding makes the printed pair differ)."""
    *_, bpc, printed = row
    low, high = word_perplexity_from_bpc(bpc - 0.005, PENN_MEAN_WORD_LENGTH), word_perplexity_from_bpc(
        bpc + 0.005, PENN_MEAN_WORD_LENGTH)
    assert low - 0.5 <= printed <= high + 0.5
    # the mean word length each row implies, c = log₂(perplexity) / BPC, is Graves' 5.6 to the rounding
    assert math.log2(printed) / bpc == pytest.approx(PENN_MEAN_WORD_LENGTH, abs=0.03)
