"""The compressed model file `model.vzc`: Deep Compression's storage, loadable as a dense model.

Han, Mao, Dally, "Deep Compression", ICLR 2016, Fig. 1: a pruned layer is stored as CSR with
relative indices (`sparse.py`), a weight-shared layer as log₂ k-bit codes into a codebook of k
float32 values (`quantize.py`), and both streams are Huffman-coded (`huffman.py`). Binary
layers (XNOR-Net, Rastegari et al. ECCV 2016, Sec. 3.1) store one sign bit per weight and one
float32 α per output filter.

Layout: b"VZC1", a little-endian u32 header length, the zlib-compressed JSON header, then the
payload. The header holds the checkpoint's `model.json` description (name, kwargs, classes,
normalisation, data), the architecture changes to replay after `create_model` (binarisation,
removed channels), and one descriptor per state_dict tensor: shape, dtype, encoding, the byte
length of each of its payload parts and the code lengths of its Huffman tables.

Encodings of a tensor (a weight is read as output units × the rest):
- ``raw``: its bytes as they are (biases, normalisation, buffers, unshared weights);
- ``sparse``: row entry counts (fixed width), relative column indices (fixed `index_bits` or
  Huffman), float32 values, filler zeros included;
- ``shared``: codebook + dense codes (fixed log₂ k bits or Huffman); with ``sparse`` the codes
  of the non-zeros only, in the sparse layout above (code 0, the value 0, marks fillers);
- ``binary``: α per row and the packed sign bits.
Decoding any of them gives back the tensor bit for bit.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.errors import UsageError
from ..core.io import write_bytes
from ..weights import model_from_meta, register_checkpoint_reader
from . import huffman
from .sparse import RelativeCSR, from_relative_csr, relative_csr

MAGIC = b"VZC1"


@dataclass
class LayerCoding:
    """How one weight is stored: `kind` raw|sparse|shared|binary; `bits` of the shared codes;
    `index_bits` of relative indices when `sparse`; `huffman` for the code and index streams."""
    kind: str = "raw"
    sparse: bool = False
    bits: int = 0
    index_bits: int = 0
    huffman: bool = True


@dataclass
class _Writer:
    parts: list = field(default_factory=list)

    def add(self, descriptor: dict, key: str, data: bytes) -> None:
        descriptor.setdefault("parts", {})[key] = len(data)
        self.parts.append(data)


def _raw_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes()


def _from_raw(data: bytes, dtype: str, shape) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=getattr(torch, dtype)).reshape(shape).clone()


def _write_symbols(writer: _Writer, descriptor: dict, key: str, symbols: np.ndarray, bits: int,
                   use_huffman: bool) -> None:
    """A stream of symbols in 0..2^bits − 1: Huffman-coded (code lengths in the header) or fixed."""
    descriptor[f"{key}_count"] = int(len(symbols))
    if use_huffman and len(symbols):
        lengths = huffman.code_lengths(np.bincount(symbols, minlength=1 << bits))
        descriptor[f"{key}_lengths"] = lengths.tolist()
        writer.add(descriptor, key, huffman.huffman_encode(symbols, lengths))
    else:
        writer.add(descriptor, key, huffman.pack_fixed(symbols, bits))


def _read_symbols(descriptor: dict, key: str, parts: dict, bits: int) -> np.ndarray:
    count = descriptor[f"{key}_count"]
    if f"{key}_lengths" in descriptor:
        return huffman.huffman_decode(parts[key], np.asarray(descriptor[f"{key}_lengths"]), count)
    return huffman.unpack_fixed(parts[key], bits, count)


def _write_sparse_layout(writer, descriptor, encoded: RelativeCSR, coding: LayerCoding) -> None:
    width = max(1, int(encoded.row_counts.max(initial=0)).bit_length())
    descriptor.update(row_bits=width, fillers=encoded.fillers)
    writer.add(descriptor, "rows", huffman.pack_fixed(encoded.row_counts, width))
    _write_symbols(writer, descriptor, "gaps", encoded.gaps - 1, coding.index_bits, coding.huffman)


def _read_sparse_layout(descriptor, parts, shape2d, values) -> np.ndarray:
    rows = huffman.unpack_fixed(parts["rows"], descriptor["row_bits"], shape2d[0])
    gaps = _read_symbols(descriptor, "gaps", parts, descriptor["index_bits"]) + 1
    return from_relative_csr(RelativeCSR(shape2d, descriptor["index_bits"], rows, gaps, values))


def _shared_codebook(matrix: np.ndarray, coding: LayerCoding) -> tuple[np.ndarray, np.ndarray]:
    codebook, codes = np.unique(matrix, return_inverse=True)
    if coding.sparse:  # code 0 must mean 0: it is the value of pruned weights and fillers
        zero = np.flatnonzero(codebook == 0)
        if len(zero) == 0:
            raise ValueError("a sparse shared layer must contain zeros")
        order = np.concatenate([zero, np.flatnonzero(codebook != 0)])
        codebook, codes = codebook[order], np.argsort(order)[codes]
    if len(codebook) > 1 << coding.bits:
        raise ValueError(f"{len(codebook)} distinct values do not fit {coding.bits}-bit codes")
    return codebook, codes.reshape(matrix.shape)


def _encode(writer: _Writer, name: str, tensor: torch.Tensor, coding: LayerCoding) -> dict:
    descriptor = {"name": name, "shape": list(tensor.shape), "dtype": str(tensor.dtype).split(".")[1],
                  "kind": coding.kind}
    if coding.kind == "raw":
        writer.add(descriptor, "data", _raw_bytes(tensor))
        return descriptor
    if tensor.dtype != torch.float32:
        raise ValueError(f"{name}: only float32 weights can be compressed, not {tensor.dtype}")
    matrix = tensor.detach().cpu().reshape(tensor.shape[0], -1).numpy()
    descriptor.update(sparse=coding.sparse, index_bits=coding.index_bits)
    if coding.kind == "binary":
        alpha = np.abs(matrix).max(1)
        signs = matrix >= 0
        if not np.array_equal(np.where(signs, alpha[:, None], -alpha[:, None]), matrix):
            raise ValueError(f"{name}: weights are not ±α per output unit; binarise them first")
        writer.add(descriptor, "alpha", alpha.astype(np.float32).tobytes())
        writer.add(descriptor, "signs", np.packbits(signs.ravel()).tobytes())
    elif coding.kind == "sparse":
        encoded = relative_csr(matrix, coding.index_bits)
        _write_sparse_layout(writer, descriptor, encoded, coding)
        writer.add(descriptor, "values", encoded.values.astype(np.float32).tobytes())
    elif coding.kind == "shared":
        codebook, codes = _shared_codebook(matrix, coding)
        descriptor["bits"] = coding.bits
        writer.add(descriptor, "codebook", codebook.astype(np.float32).tobytes())
        if coding.sparse:
            encoded = relative_csr(codes, coding.index_bits)
            _write_sparse_layout(writer, descriptor, encoded, coding)
            codes = encoded.values
        _write_symbols(writer, descriptor, "codes", codes.ravel(), coding.bits, coding.huffman)
    else:
        raise ValueError(f"unknown storage kind {coding.kind!r}")
    return descriptor


def _decode(descriptor: dict, parts: dict[str, bytes]) -> torch.Tensor:
    shape, kind = descriptor["shape"], descriptor["kind"]
    if kind == "raw":
        return _from_raw(parts["data"], descriptor["dtype"], shape)
    shape2d = (shape[0], int(np.prod(shape[1:], dtype=np.int64)))
    if kind == "binary":
        alpha = np.frombuffer(parts["alpha"], dtype=np.float32)
        signs = np.unpackbits(np.frombuffer(parts["signs"], dtype=np.uint8))[:shape2d[0] * shape2d[1]]
        matrix = np.where(signs.reshape(shape2d).astype(bool), alpha[:, None], -alpha[:, None])
    elif kind == "sparse":
        matrix = _read_sparse_layout(descriptor, parts, shape2d, np.frombuffer(parts["values"], dtype=np.float32))
    else:
        codebook = np.frombuffer(parts["codebook"], dtype=np.float32)
        codes = _read_symbols(descriptor, "codes", parts, descriptor["bits"])
        if descriptor["sparse"]:
            codes = _read_sparse_layout(descriptor, parts, shape2d, codes)
        matrix = codebook[codes.reshape(shape2d)]
    return torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32)).reshape(shape)


def save_compressed(path, model: nn.Module, meta: dict, codings: dict[str, LayerCoding],
                    transforms: list | None = None) -> list[dict]:
    """Write `model` to `path` with each weight `codings[name]` stores (others raw).

    `codings` is keyed by weight-layer name; `transforms` are the architecture changes that
    `load_compressed` replays. Returns the tensor descriptors, each with its bytes on disk.
    """
    writer = _Writer()
    descriptors = []
    for name, tensor in model.state_dict().items():
        layer, _, leaf = name.rpartition(".")
        coding = codings.get(layer) if leaf == "weight" else None
        descriptors.append(_encode(writer, name, tensor, coding or LayerCoding()))
    header = zlib.compress(json.dumps({"meta": meta, "transforms": transforms or [],
                                       "tensors": descriptors}, separators=(",", ":")).encode(), 9)
    blob = MAGIC + struct.pack("<I", len(header)) + header + b"".join(writer.parts)
    write_bytes(path, blob)
    for descriptor in descriptors:
        descriptor["bytes"] = sum(descriptor["parts"].values())
    return descriptors


def read_compressed(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The header and the decoded state_dict of a `.vzc` file."""
    data = Path(path).read_bytes()
    try:
        if data[:4] != MAGIC:
            raise ValueError("not a visionzoo compressed model (bad magic)")
        (length,) = struct.unpack("<I", data[4:8])
        header = json.loads(zlib.decompress(data[8:8 + length]))
        offset, state = 8 + length, {}
        for descriptor in header["tensors"]:
            parts = {}
            for key, size in descriptor["parts"].items():
                parts[key] = data[offset:offset + size]
                offset += size
            state[descriptor["name"]] = _decode(descriptor, parts)
    except (ValueError, KeyError, struct.error, zlib.error) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    return header, state


def replay(model: nn.Module, transforms: list) -> None:
    """Re-apply the recorded architecture changes to a freshly created model, in order."""
    from ..layers.binary import binarize
    from .channels import set_widths
    for kind, argument in transforms:
        if kind == "binarize":
            binarize(model, argument)
        elif kind == "channels":
            set_widths(model, argument)
        else:
            raise UsageError(f"unknown architecture change {kind!r} in the compressed file; "
                             "it was written by a newer visionzoo")


def load_compressed(path) -> tuple[nn.Module, dict]:
    """Rebuild the dense model of a `.vzc` file (a file or a directory holding model.vzc)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.vzc"
    if not path.exists():
        raise UsageError(f"{path} does not exist; give a .vzc file or the directory `visionzoo compress` wrote")
    header, state = read_compressed(path)
    meta = header["meta"]
    try:
        model = model_from_meta(meta)
    except (KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not a visionzoo model description ({exc})") from None
    replay(model, header["transforms"])
    model.load_state_dict(state)
    model.eval()
    return model, meta


register_checkpoint_reader(".vzc", load_compressed)
