"""Sparse storage of pruned layers: CSR/CSC and relative indices with filler zeros.

Han, Mao, Dally, "Deep Compression", ICLR 2016, Sec. 2 (the notes' "Network Pruning"):
- CSR (or CSC, the CSR of the transpose) stores a matrix with a non-zeros and n rows as
  2a + n + 1 numbers: the values, their column indices and the n + 1 row pointers.
- To compress further, the index difference to the previous non-zero is stored instead of the
  absolute column, in 8 bits for convolutional and 5 bits for fully connected layers. When a
  difference exceeds the span 2^bits, a filler zero is stored one span further on (the notes'
  example: span 8 = 2³, non-zeros at 1, 4 and 15 → a filler at 12).

Differences here are counted within each row from position −1, so they lie in 1..2^bits and
are stored minus one; the first entry of a row can then sit at column 0. (The notes' figure
counts its first difference from 0; the fillers fall on the same positions either way.)
A weight tensor is read as a matrix of its output units (rows) × everything else (columns).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def csr(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, column indices, row pointers): the 2a + n + 1 numbers of the notes."""
    rows, cols = np.nonzero(matrix)
    row_ptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=matrix.shape[0]))])
    return matrix[rows, cols], cols, row_ptr


def csc(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, row indices, column pointers): CSR of the transpose."""
    return csr(np.ascontiguousarray(matrix.T))


def from_csr(values, col_index, row_ptr, shape) -> np.ndarray:
    matrix = np.zeros(shape, dtype=np.asarray(values).dtype)
    rows = np.repeat(np.arange(shape[0]), np.diff(row_ptr))
    matrix[rows, col_index] = values
    return matrix


@dataclass
class RelativeCSR:
    """CSR with relative column indices: entries per row (fillers included), differences, values."""
    shape: tuple[int, int]
    index_bits: int
    row_counts: np.ndarray
    gaps: np.ndarray      # 1..2^index_bits, one per entry
    values: np.ndarray    # 0 at filler entries

    @property
    def fillers(self) -> int:
        return int((self.values == 0).sum())


def relative_csr(matrix: np.ndarray, index_bits: int) -> RelativeCSR:
    span = 1 << index_bits
    rows, cols = np.nonzero(matrix)
    same_row = np.concatenate([[False], rows[1:] == rows[:-1]])
    previous = np.where(same_row, np.concatenate([[-1], cols[:-1]]), -1)
    gap = cols - previous
    fillers = (gap - 1) // span
    per_nonzero = fillers + 1
    owner = np.repeat(np.arange(len(cols)), per_nonzero)
    first = np.concatenate([[0], np.cumsum(per_nonzero)[:-1]])
    is_value = np.arange(len(owner)) - first[owner] == fillers[owner]
    gaps = np.where(is_value, gap[owner] - fillers[owner] * span, span)
    values = np.where(is_value, matrix[rows, cols][owner], 0).astype(matrix.dtype)
    row_counts = np.bincount(rows[owner], minlength=matrix.shape[0])
    return RelativeCSR(tuple(matrix.shape), index_bits, row_counts, gaps, values)


def from_relative_csr(encoded: RelativeCSR) -> np.ndarray:
    matrix = np.zeros(encoded.shape, dtype=encoded.values.dtype)
    rows = np.repeat(np.arange(encoded.shape[0]), encoded.row_counts)
    position = np.cumsum(encoded.gaps)
    row_start = np.concatenate([[0], np.cumsum(encoded.row_counts)[:-1]])
    before_row = np.concatenate([[0], position])[row_start][rows]
    matrix[rows, position - before_row - 1] = encoded.values
    return matrix
