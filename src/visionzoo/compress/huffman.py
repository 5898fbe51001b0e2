"""Bit-level coding of Deep Compression's streams: fixed-width packing and Huffman codes.

Han, Mao, Dally, "Deep Compression: Compressing Deep Neural Networks with Pruning, Trained
Quantization and Huffman Coding", ICLR 2016, Sec. 4: the quantised weight indices and the
relative sparse indices are biased distributions, so a Huffman code (lossless, prefix-free)
saves 20–30 % of their storage.

The code is canonical: only each symbol's code length is stored, and codes are assigned in
(length, symbol) order. Lengths are capped at `MAX_CODE_BITS` so that decoding can look a whole
code up in one table of 2^MAX_CODE_BITS entries; a distribution that would need longer codes is
flattened (counts halved, rounding up) until it does not.
"""
from __future__ import annotations

import heapq

import numpy as np

MAX_CODE_BITS = 16


def pack_fixed(values: np.ndarray, bits: int) -> bytes:
    """Each value (0 ≤ v < 2^bits) in `bits` bits, most significant first, padded to a byte."""
    values = np.asarray(values, dtype=np.int64)
    if values.size and (values.min() < 0 or values.max() >= 1 << bits):
        raise ValueError(f"values outside 0..{(1 << bits) - 1} cannot be packed in {bits} bits")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    return np.packbits(((values[:, None] >> shifts) & 1).astype(np.uint8).ravel()).tobytes()


def unpack_fixed(data: bytes, bits: int, count: int) -> np.ndarray:
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:count * bits].astype(np.int64)
    return (flat.reshape(count, bits) << np.arange(bits - 1, -1, -1, dtype=np.int64)).sum(1)


def _raw_lengths(counts: np.ndarray) -> np.ndarray:
    used = [int(s) for s in np.flatnonzero(counts)]
    lengths = np.zeros(len(counts), dtype=np.int64)
    if len(used) == 1:  # a lone symbol still needs one bit per occurrence
        lengths[used[0]] = 1
        return lengths
    # Heap of (weight, tie-breaker, symbols in the subtree); merging deepens every symbol by one.
    heap = [(int(counts[s]), s, [s]) for s in used]
    heapq.heapify(heap)
    order = len(counts)
    while len(heap) > 1:
        w1, _, left = heapq.heappop(heap)
        w2, _, right = heapq.heappop(heap)
        lengths[left + right] += 1
        heapq.heappush(heap, (w1 + w2, order, left + right))
        order += 1
    return lengths


def code_lengths(counts) -> np.ndarray:
    """Huffman code length of each symbol (0 for symbols that never occur), at most MAX_CODE_BITS."""
    counts = np.asarray(counts, dtype=np.int64)
    lengths = _raw_lengths(counts)
    while lengths.max(initial=0) > MAX_CODE_BITS:
        counts = np.where(counts > 0, (counts + 1) // 2, 0)
        lengths = _raw_lengths(counts)
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """The canonical code of each symbol: consecutive integers in (length, symbol) order."""
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, previous = 0, 0
    for symbol in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[symbol]) - previous
        codes[symbol], previous = code, int(lengths[symbol])
        code += 1
    return codes


def huffman_encode(symbols: np.ndarray, lengths: np.ndarray) -> bytes:
    symbols = np.asarray(symbols, dtype=np.int64)
    if symbols.size == 0:
        return b""
    codes, sizes = canonical_codes(lengths)[symbols], lengths[symbols]
    if (sizes == 0).any():
        raise ValueError("a symbol without a code length cannot be encoded")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    stream = np.zeros(int(sizes.sum()), dtype=np.uint8)
    for bit in range(int(sizes.max())):  # the bit-th bit of every code at once
        has = sizes > bit
        stream[starts[has] + bit] = (codes[has] >> (sizes[has] - 1 - bit)) & 1
    return np.packbits(stream).tobytes()


def huffman_decode(data: bytes, lengths: np.ndarray, count: int) -> np.ndarray:
    """`count` symbols back from `data`: every bit position's next MAX_CODE_BITS bits index a table."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = canonical_codes(lengths)
    table_symbol = np.zeros(1 << MAX_CODE_BITS, dtype=np.int64)
    table_size = np.zeros(1 << MAX_CODE_BITS, dtype=np.int64)
    for symbol in np.flatnonzero(lengths):
        shift = MAX_CODE_BITS - int(lengths[symbol])
        first = int(codes[symbol]) << shift
        table_symbol[first:first + (1 << shift)] = symbol
        table_size[first:first + (1 << shift)] = lengths[symbol]
    bits = np.concatenate([np.unpackbits(np.frombuffer(data, dtype=np.uint8)),
                           np.zeros(MAX_CODE_BITS, dtype=np.uint8)]).astype(np.int64)
    windows = np.zeros(len(bits) - MAX_CODE_BITS, dtype=np.int64)
    for offset in range(MAX_CODE_BITS):
        windows = (windows << 1) | bits[offset:offset + len(windows)]
    symbols_at, sizes_at = table_symbol[windows].tolist(), table_size[windows].tolist()
    out, position = [], 0
    for _ in range(count):
        out.append(symbols_at[position])
        position += sizes_at[position]
    return np.asarray(out, dtype=np.int64)

