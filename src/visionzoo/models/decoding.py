"""Decoding a translation model: greedy search and beam search with length normalisation, for one
network or an ensemble (Sutskever, Vinyals, Le, "Sequence to Sequence Learning with Neural
Networks", NeurIPS 2014, Sec. 3.2 — "a simple left-to-right beam search decoder which maintains a
small number B of partial hypotheses", ensembles of 5 LSTMs, Table 1; Bahdanau et al. 2015, Sec. 4.2;
Vaswani et al. 2017, Sec. 6.1 — beam 4, length penalty).

A model offers `encode(src)` → a memory (a dict of tensors whose first dimension is the batch) and
`decode_step(memory, tokens, cache)` → (logits of the next token (B, V), cache), `tokens` being
the last token of each hypothesis and `cache` (None at the first step) what the model keeps of the
prefix (a Transformer's keys and values, an RNN's state), also batch-first, so that `select` can
reorder it when the beam's hypotheses change places.

Ensemble: the members' next-token distributions are averaged, log((1/M) Σ_m p_m(y | prefix, x)).

Beam search keeps K live hypotheses per sentence; at each step every live hypothesis is extended by
every token, and of the 2K best extensions those ending in <eos> are finished and the K best others
live on. A finished hypothesis y (its <eos> included, |y| tokens) scores log P(y | x) / |y|^α
(α = 1: the mean log-probability per token, the usual length normalisation; α = 0: none). A
sentence's search ends when no live hypothesis can still beat its best finished one: a live one
with log-probability s (≤ 0) can at most reach s / L^α, L being the longest length allowed, since
more tokens only lower s; so with K at least the number of possible hypotheses the search is
exhaustive, and tested against enumeration. A hypothesis may hold at most ⌊a·|x| + b⌋ tokens
(<eos> included; at the last position only <eos> is allowed).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..core.errors import UsageError


def select(tree, index: torch.Tensor):
    """Every tensor of a nested dict/list/tuple indexed along its first (batch) dimension."""
    if isinstance(tree, torch.Tensor):
        return tree.index_select(0, index.to(tree.device))
    if isinstance(tree, dict):
        return {key: select(value, index) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(select(value, index) for value in tree)
    return tree


def _members(models) -> list[nn.Module]:
    members = list(models) if isinstance(models, (list, tuple)) else [models]
    if not members:
        raise UsageError("decoding needs at least one network")
    return members


def length_limits(src: torch.Tensor, pad: int, a: float, b: float) -> torch.Tensor:
    """⌊a·|x| + b⌋ tokens per sentence (at least 1), |x| the source's tokens without padding."""
    return (a * (src != pad).sum(1).double() + b).floor().long().clamp(min=1)


def next_log_probs(members, memories, tokens, caches):
    """log of the members' mean next-token distribution (B, V), and their new caches."""
    log_probs, new_caches = [], []
    for model, memory, cache in zip(members, memories, caches):
        logits, cache = model.decode_step(memory, tokens, cache)
        log_probs.append(torch.log_softmax(logits.float(), -1))
        new_caches.append(cache)
    if len(log_probs) == 1:
        return log_probs[0], new_caches
    return torch.logsumexp(torch.stack(log_probs), 0) - math.log(len(log_probs)), new_caches


@torch.no_grad()
def greedy_decode(models, src: torch.Tensor, *, bos: int, eos: int, pad: int = 0, max_len_a: float = 1.5,
                  max_len_b: float = 10) -> list[list[int]]:
    """The most probable next token at every step, until <eos> or the length limit (the module docstring's,
    as for beam search: at the last position <eos> is the only token); the tokens (without <eos>) per sentence."""
    members = _members(models)
    limits = length_limits(src, pad, max_len_a, max_len_b)
    memories = [model.encode(src) for model in members]
    caches = [None] * len(members)
    tokens = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
    outputs: list[list[int]] = [[] for _ in range(src.shape[0])]
    done = [False] * src.shape[0]
    for step in range(int(limits.max())):
        log_probs, caches = next_log_probs(members, memories, tokens, caches)
        best = log_probs.argmax(-1)
        for i, token in enumerate(best.tolist()):
            if done[i]:
                continue
            if token == eos or step + 1 >= limits[i]:
                done[i] = True
            else:
                outputs[i].append(token)
        if all(done):
            break
        tokens = best[:, None]
    return outputs


@torch.no_grad()
def beam_search(models, src: torch.Tensor, *, bos: int, eos: int, pad: int = 0, beam: int = 4, alpha: float = 1.0,
                max_len_a: float = 1.5, max_len_b: float = 10, return_scores: bool = False):
    """The best hypothesis per sentence (tokens without <eos>) by the module docstring's beam search;
    with `return_scores` also its normalised score log P(y | x) / |y|^α."""
    if beam < 1:
        raise UsageError(f"--beam {beam}: a beam holds at least one hypothesis")
    if alpha < 0:
        raise UsageError(f"length penalty α={alpha}: must be ≥ 0")
    members = _members(models)
    batch, device = src.shape[0], src.device
    limits = length_limits(src, pad, max_len_a, max_len_b).tolist()
    expand = torch.arange(batch, device=device).repeat_interleave(beam)
    memories = [select(model.encode(src), expand) for model in members]
    caches = [None] * len(members)
    scores = torch.full((batch, beam), -math.inf, device=device)
    scores[:, 0] = 0.0
    history = torch.full((batch * beam, 1), bos, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    must_end = torch.tensor([limit == 1 for limit in limits], device=device)
    for step in range(max(limits)):
        log_probs, caches = next_log_probs(members, memories, history[:, -1:], caches)
        vocab = log_probs.shape[-1]
        log_probs = log_probs.view(batch, beam, vocab)
        if must_end.any():       # at a sentence's last allowed position only <eos> may follow
            keep_eos = torch.where(torch.arange(vocab, device=device) == eos, 0.0, -math.inf)
            log_probs = torch.where(must_end[:, None, None], log_probs + keep_eos, log_probs)
        candidates = (scores[:, :, None] + log_probs).view(batch, beam * vocab)
        top, index = candidates.topk(min(2 * beam, beam * vocab), -1)
        new_scores = torch.full((batch, beam), -math.inf, device=device)
        parents = torch.zeros((batch, beam), dtype=torch.long, device=device)
        tokens = torch.full((batch, beam), eos, dtype=torch.long, device=device)
        top_list, index_list = top.tolist(), index.tolist()
        for b in range(batch):
            if done[b]:
                continue
            alive = 0
            for score, flat in zip(top_list[b], index_list[b]):
                if score == -math.inf:
                    break
                parent, token = divmod(flat, vocab)
                if token == eos:
                    finished[b].append((score / (step + 1) ** alpha, history[b * beam + parent, 1:].tolist()))
                elif alive < beam:
                    new_scores[b, alive], parents[b, alive], tokens[b, alive] = score, parent, token
                    alive += 1
            best_live = new_scores[b, 0].item()
            bound = best_live / limits[b] ** alpha if alpha else best_live
            if alive == 0 or (finished[b] and max(finished[b])[0] >= bound):
                done[b] = True
                new_scores[b] = -math.inf
        if all(done):
            break
        order = (torch.arange(batch, device=device)[:, None] * beam + parents).view(-1)
        history = torch.cat([history[order], tokens.view(-1, 1)], 1)
        caches = [select(cache, order) for cache in caches]
        scores = new_scores
        must_end = torch.tensor([step + 2 >= limit for limit in limits], device=device)
    best = [max(hypotheses) if hypotheses else (-math.inf, []) for hypotheses in finished]
    if return_scores:
        return [tokens for _, tokens in best], [score for score, _ in best]
    return [tokens for _, tokens in best]


def sequence_log_prob(model: nn.Module, src: torch.Tensor, target: list[int], *, bos: int, eos: int) -> float:
    """log P(target <eos> | src) of one sentence (src (1, S)) by teacher forcing: the quantity beam
    search maximises (divided by its length^α)."""
    tgt = torch.tensor([[bos, *target]], device=src.device)
    log_probs = torch.log_softmax(model(src, tgt).float(), -1)[0]
    following = torch.tensor([*target, eos], device=src.device)
    return log_probs.gather(1, following[:, None]).sum().item()
