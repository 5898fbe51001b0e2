"""Corpus BLEU: Papineni, Roukos, Ward, Zhu, "BLEU: a Method for Automatic Evaluation of Machine
Translation", ACL 2002, Sec. 2 (clipped n-gram precisions p_n, n = 1 … 4, their geometric mean and
the brevity penalty BP = exp(1 − r/c) when the candidate length c is below the reference length r),
computed the way sacrebleu reports it (Post, "A Call for Clarity in Reporting BLEU Scores", WMT
2018) with its defaults, so that our numbers compare with published ones:

- tokenisation "13a", that of the WMT script mteval-v13a.pl: the line's right end stripped, HTML
  entities &quot; &amp; &lt; &gt; decoded, then a space put around every ASCII symbol
  ({|}~ [\\]^_` space–& (–+ :–@ /), around a period or comma not between two digits, and after a
  dash that follows a digit; runs of whitespace become one space;
- statistics summed over the corpus before the ratio is taken (corpus BLEU, not a mean of sentence
  scores); with several references a hypothesis' n-grams are clipped by their largest count in any
  reference and r counts the reference length closest to the hypothesis' (the shorter on a tie);
- smoothing "exp" (mteval's NIST smoothing, Chen & Cherry 2014, method 3): the k-th order with no
  match counts 1 / (2^k · total) as its precision; a corpus without any match scores 0;
- the score is 100 · BP · exp(Σ_n ln p_n / 4).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from ..core.errors import UsageError

MAX_ORDER = 4
# 13a: the ASCII symbols split off every word, ranges as in mteval-v13a's character class
_SYMBOL = re.compile(r"([{-~\[-` -&(-+:-@/])")
_PERIOD_COMMA_AFTER = re.compile(r"([^0-9])([.,])")     # not preceded by a digit
_PERIOD_COMMA_BEFORE = re.compile(r"([.,])([^0-9])")    # not followed by a digit
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")
_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))


def tokenize_13a(line: str) -> list[str]:
    """The tokens mteval-v13a (and sacrebleu's default) score: see the module docstring."""
    line = line.rstrip().replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, character in _ENTITIES:
        line = line.replace(entity, character)
    line = _SYMBOL.sub(r" \1 ", f" {line} ")
    line = _PERIOD_COMMA_AFTER.sub(r"\1 \2 ", line)
    line = _PERIOD_COMMA_BEFORE.sub(r" \1 \2", line)
    line = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", line)
    return line.split()


def _ngrams(tokens: list[str]) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for n in range(1, MAX_ORDER + 1) for i in range(len(tokens) - n + 1))


def bleu_statistics(hypotheses: Sequence[str], references: Sequence) -> dict:
    """The corpus' sufficient statistics: matched and total n-grams per order, hypothesis and reference
    lengths. `references[i]` is hypothesis i's reference, a string or a sequence of several."""
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise UsageError("bleu: give lists of sentences (one hypothesis and its reference(s) per item), not a string")
    if len(hypotheses) != len(references):
        raise UsageError(f"bleu: {len(hypotheses)} hypotheses but {len(references)} references; give one "
                         "reference (or a list of references) per hypothesis; sacrebleu's reference streams "
                         "[[r1, …, rN], …] are list(zip(*streams)) here")
    matched, total = [0] * MAX_ORDER, [0] * MAX_ORDER
    hypothesis_length = reference_length = 0
    for hypothesis, refs in zip(hypotheses, references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs:
            raise UsageError("bleu: a hypothesis has no reference")
        tokens = tokenize_13a(hypothesis)
        counts = _ngrams(tokens)
        ceiling: Counter = Counter()
        lengths = []
        for reference in refs:
            reference_tokens = tokenize_13a(reference)
            lengths.append(len(reference_tokens))
            ceiling |= _ngrams(reference_tokens)      # per n-gram the largest count in any reference
        hypothesis_length += len(tokens)
        reference_length += min(lengths, key=lambda length: (abs(length - len(tokens)), length))
        for gram, count in counts.items():
            order = len(gram) - 1
            total[order] += count
            matched[order] += min(count, ceiling[gram])
    return {"matched": matched, "total": total, "hypothesis_length": hypothesis_length,
            "reference_length": reference_length}


def bleu_from_statistics(matched: Sequence[int], total: Sequence[int], hypothesis_length: int,
                         reference_length: int) -> float:
    """100 · BP · geometric mean of the smoothed precisions (module docstring)."""
    if not any(matched):
        return 0.0
    penalty = 1.0
    if hypothesis_length < reference_length:
        penalty = math.exp(1 - reference_length / hypothesis_length) if hypothesis_length else 0.0
    log_precisions, halvings = 0.0, 1
    for n in range(MAX_ORDER):
        if total[n] == 0:        # hypotheses too short for this order: the geometric mean collapses to 0
            return 0.0
        if matched[n] == 0:
            halvings *= 2
            log_precisions += math.log(100.0 / (halvings * total[n]))
        else:
            log_precisions += math.log(100.0 * matched[n] / total[n])
    return penalty * math.exp(log_precisions / MAX_ORDER)


def bleu(hypotheses: Sequence[str], references: Sequence) -> float:
    """Corpus BLEU in [0, 100] of detokenised `hypotheses` against `references` (one string, or a
    list of strings, per hypothesis): sacrebleu's corpus_bleu with its defaults (module docstring)."""
    return bleu_from_statistics(**bleu_statistics(hypotheses, references))
