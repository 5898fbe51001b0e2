"""The compressed model file `model.vzc`: Deep Compression's storage, loadable as a dense model.

Han, Mao, Dally, "Deep Compression", ICLR 2016, Fig. 1: a pruned layer is stored as CSR with
relative indices (`sparse.py`), a weight-shared layer as log₂ k-bit codes into a codebook of k
float32 values (`quantize.py`), and both streams are Huffman-coded (`huffman.py`). Binary
layers (XNOR-Net, Rastegari et al. ECCV 2016, Sec. 3.1) store one sign bit per weight and one
float32 α per output filter; ternary layers (TWN, Li & Liu 2016; TTQ, Zhu et al. ICLR 2017) two
bits per weight and two float32 scales per layer.

Layout: b"VZC2", the SHA-256 digest of everything after it, a little-endian u64 total file
length, a u32 header length, the zlib-compressed JSON header, then the payload. A flipped bit
anywhere fails the digest, a cut file fails the length first (reported as truncation), and every
size the header declares is checked against the file's own length and `MAX_ELEMENTS` before
anything is allocated or decoded. The header holds the checkpoint's `model.json` description (name, kwargs, classes,
normalisation, data), the architecture changes to replay after `create_model` (binarisation,
ternarisation, removed channels), and one descriptor per state_dict tensor: shape, dtype, encoding, the byte
length of each of its payload parts and the code lengths of its Huffman tables.

Encodings of a tensor (a weight is read as output units × the rest):
- ``raw``: its bytes as they are (biases, normalisation, buffers, unshared weights);
- ``sparse``: row entry counts (fixed width), relative column indices (fixed `index_bits` or
  Huffman), float32 values, filler zeros included;
- ``shared``: codebook + dense codes (fixed log₂ k bits or Huffman); with ``sparse`` the codes
  of the non-zeros only, in the sparse layout above (code 0, the value 0, marks fillers);
- ``binary``: α per row and the packed sign bits;
- ``ternary``: the scales (W_p, W_n) of the values +W_p, 0, −W_n and the 2-bit codes
  (0 → 0, 1 → +W_p, 2 → −W_n; 3 is invalid), four per byte, the first in the lowest two bits.
Decoding any of them gives back the tensor bit for bit.
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.errors import DataError, UsageError
from ..core.io import write_bytes
from ..weights import model_from_meta, register_checkpoint_reader
from . import huffman
from .sparse import RelativeCSR, from_relative_csr, relative_csr

MAGIC = b"VZC2"
_PREAMBLE = struct.Struct("<4s32sQI")   # magic, SHA-256 of the rest, file length, header length
_DIGESTED_FROM = 36           # the digest covers every byte after itself
MAX_ELEMENTS = 1 << 28        # elements of one tensor (1 GiB of float32; VGG's fc6 has 2^26.6)
MAX_TOTAL_ELEMENTS = 1 << 30  # elements of the whole decoded state_dict
MAX_HEADER_BYTES = 64 << 20   # the decompressed JSON header
MAX_SYMBOL_BITS = 16          # code and index widths: alphabets of at most 2^16 symbols
KINDS = ("raw", "sparse", "shared", "binary", "ternary")


@dataclass
class LayerCoding:
    """How one weight is stored: `kind` raw|sparse|shared|binary|ternary; `bits` of the shared codes;
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


def pack_ternary(codes: np.ndarray) -> bytes:
    """Codes in {−1, 0, +1} as 2-bit symbols (−1 → 2, 0 → 0, +1 → 1), four per byte, low bits first."""
    symbols = np.where(codes < 0, 2, codes).astype(np.uint8).ravel()
    symbols = np.concatenate([symbols, np.zeros(-len(symbols) % 4, dtype=np.uint8)]).reshape(-1, 4)
    return (symbols << np.array([0, 2, 4, 6], dtype=np.uint8)).sum(1, dtype=np.uint8).tobytes()


def unpack_ternary(data: bytes, count: int) -> np.ndarray:
    """The first `count` codes of `pack_ternary`'s bytes, as int8 in {−1, 0, +1}."""
    packed = np.frombuffer(data, dtype=np.uint8)
    symbols = ((packed[:, None] >> np.array([0, 2, 4, 6], dtype=np.uint8)) & 3).ravel()[:count]
    if (symbols == 3).any():
        raise ValueError("a ternary code 3, which no value has")
    return np.where(symbols == 2, -1, symbols).astype(np.int8)


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
    elif coding.kind == "ternary":
        positive, negative = matrix[matrix > 0], matrix[matrix < 0]
        scales = np.array([positive.max(initial=0), -negative.min(initial=0)], dtype=np.float32)
        codes = np.sign(matrix).astype(np.int8)
        if not np.array_equal(np.where(codes > 0, scales[0], np.where(codes < 0, -scales[1], 0)), matrix):
            raise ValueError(f"{name}: weights are not +W_p, 0, −W_n; ternarise them first")
        writer.add(descriptor, "scales", scales.tobytes())
        writer.add(descriptor, "codes", pack_ternary(codes))
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
    elif kind == "ternary":
        positive, negative = np.frombuffer(parts["scales"], dtype=np.float32)
        codes = unpack_ternary(parts["codes"], shape2d[0] * shape2d[1]).reshape(shape2d)
        matrix = np.where(codes > 0, positive, np.where(codes < 0, -negative, np.float32(0)))
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
    body = header + b"".join(writer.parts)
    length = _PREAMBLE.size + len(body)
    checked = struct.pack("<QI", length, len(header)) + body
    write_bytes(path, MAGIC + hashlib.sha256(checked).digest() + checked)
    for descriptor in descriptors:
        descriptor["bytes"] = sum(descriptor["parts"].values())
    return descriptors


def _corrupt(path, what: str) -> DataError:
    return DataError(f"{path}: {what}; the file is corrupt, write it again with `visionzoo compress`")


def _verified_body(path, data: bytes) -> tuple[bytes, bytes]:
    """The header (decompressed, bounded) and the payload of a `.vzc` file whose length and digest hold."""
    if data[:4] != MAGIC:
        if data[:4] == b"VZC1":
            raise DataError(f"{path}: written by an older visionzoo without a checksum; compress the model again")
        raise DataError(f"{path}: not a visionzoo compressed model (bad magic)")
    if len(data) < _PREAMBLE.size:
        raise DataError(f"{path}: truncated ({len(data)} bytes, shorter than the file's preamble)")
    _, digest, length, header_length = _PREAMBLE.unpack_from(data)
    if len(data) != length:
        what = "truncated" if len(data) < length else "longer than written"
        raise DataError(f"{path}: {what} ({len(data)} of the {length} bytes it declares)")
    if hashlib.sha256(data[_DIGESTED_FROM:]).digest() != digest:
        raise _corrupt(path, "checksum mismatch")
    if _PREAMBLE.size + header_length > length:
        raise _corrupt(path, "header longer than the file")
    inflate = zlib.decompressobj()
    try:
        header = inflate.decompress(data[_PREAMBLE.size:_PREAMBLE.size + header_length], MAX_HEADER_BYTES)
    except zlib.error as exc:
        raise _corrupt(path, f"header does not decompress ({exc})") from None
    if inflate.unconsumed_tail:
        raise _corrupt(path, f"header inflates beyond {MAX_HEADER_BYTES >> 20} MB")
    return header, data[_PREAMBLE.size + header_length:]


def _count(value, ceiling: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= ceiling:
        raise ValueError(f"{what} {value!r} is not a count in 0..{ceiling}")
    return value


def _check_stream(descriptor: dict, key: str, bits: int, most: int) -> None:
    """A symbol stream: at most `most` symbols, each taking at least one bit (Huffman) or `bits` bits of its part."""
    name, count = descriptor["name"], _count(descriptor.get(f"{key}_count"), most, f"{descriptor['name']}: {key}_count")
    lengths = descriptor.get(f"{key}_lengths")
    if lengths is None:
        width = bits
    else:
        if not isinstance(lengths, list) or len(lengths) > 1 << bits:
            raise ValueError(f"{name}: a Huffman table of more than 2^{bits} symbols")
        for length in lengths:
            _count(length, huffman.MAX_CODE_BITS, f"{name}: Huffman code length")
        if sum(2.0 ** -length for length in lengths if length) > 1:
            raise ValueError(f"{name}: Huffman code lengths that no prefix code has")
        width = 1
    if count * width > 8 * _part(descriptor, key):
        raise ValueError(f"{name}: {count} symbols do not fit the {_part(descriptor, key)} bytes of its {key}")


def _part(descriptor: dict, key: str) -> int:
    if key not in descriptor["parts"]:
        raise ValueError(f"{descriptor['name']}: no {key} part")
    return descriptor["parts"][key]


def _check_descriptor(descriptor: dict, payload_left: int) -> int:
    """Raise ValueError unless every size `descriptor` declares is sane and fits the bytes left; its element count."""
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("name"), str):
        raise ValueError("a tensor descriptor without a name")
    name, shape = descriptor["name"], descriptor.get("shape")
    if not isinstance(shape, list) or len(shape) > 8:
        raise ValueError(f"{name}: shape {shape!r} is not a list of at most 8 sizes")
    numel = math.prod(_count(size, MAX_ELEMENTS, f"{name}: size") for size in shape)
    _count(numel, MAX_ELEMENTS, f"{name}: element count")
    parts = descriptor.get("parts")
    if not isinstance(parts, dict):
        raise ValueError(f"{name}: no part sizes")
    total = sum(_count(size, payload_left, f"{name}: part {key}") for key, size in parts.items())
    if total > payload_left:
        raise ValueError(f"{name}: its parts ({total} bytes) run past the end of the file")
    kind = descriptor.get("kind")
    if kind == "raw":
        dtype = getattr(torch, str(descriptor.get("dtype")), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"{name}: unknown dtype {descriptor.get('dtype')!r}")
        if _part(descriptor, "data") != numel * dtype.itemsize:
            raise ValueError(f"{name}: {_part(descriptor, 'data')} bytes for {numel} {dtype} values")
        return numel
    if kind not in KINDS or not shape:
        raise ValueError(f"{name}: storage kind {kind!r} of a tensor of shape {shape}")
    rows = shape[0]
    if kind == "binary":
        if _part(descriptor, "alpha") != 4 * rows or _part(descriptor, "signs") != -(-numel // 8):
            raise ValueError(f"{name}: binary parts of the wrong size for shape {shape}")
        return numel
    if kind == "ternary":
        if _part(descriptor, "scales") != 8 or _part(descriptor, "codes") != -(-numel // 4):
            raise ValueError(f"{name}: ternary parts of the wrong size for shape {shape}")
        return numel
    if descriptor.get("sparse") or kind == "sparse":
        index_bits = _count(descriptor.get("index_bits"), MAX_SYMBOL_BITS, f"{name}: index_bits")
        row_bits = _count(descriptor.get("row_bits"), 32, f"{name}: row_bits")
        if rows * row_bits > 8 * _part(descriptor, "rows"):
            raise ValueError(f"{name}: {rows} row counts do not fit its rows part")
        _check_stream(descriptor, "gaps", index_bits, numel)
    if kind == "sparse":
        if 4 * descriptor["gaps_count"] != _part(descriptor, "values"):
            raise ValueError(f"{name}: {descriptor['gaps_count']} entries but {_part(descriptor, 'values')} value bytes")
    else:
        bits = _count(descriptor.get("bits"), MAX_SYMBOL_BITS, f"{name}: bits")
        if _part(descriptor, "codebook") > 4 << bits:
            raise ValueError(f"{name}: a codebook of more than 2^{bits} values")
        _check_stream(descriptor, "codes", bits, numel)
    return numel


def read_compressed(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The header and the decoded state_dict of a `.vzc` file."""
    data = Path(path).read_bytes()
    header_bytes, payload = _verified_body(path, data)
    try:
        header = json.loads(header_bytes)
        if not isinstance(header, dict) or not isinstance(header.get("tensors"), list):
            raise ValueError("the header lists no tensors")
        offset, elements, state = 0, 0, {}
        for descriptor in header["tensors"]:
            elements += _check_descriptor(descriptor, len(payload) - offset)
            if elements > MAX_TOTAL_ELEMENTS:
                raise ValueError(f"more than {MAX_TOTAL_ELEMENTS} elements in all")
            parts = {}
            for key, size in descriptor["parts"].items():
                parts[key] = payload[offset:offset + size]
                offset += size
            state[descriptor["name"]] = _decode(descriptor, parts)
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError, struct.error) as exc:
        raise _corrupt(path, f"inconsistent contents ({exc})") from None
    return header, state


def replay(model: nn.Module, transforms: list) -> None:
    """Re-apply the recorded architecture changes to a freshly created model, in order."""
    from ..layers.binary import binarize
    from ..layers.ternary import ternarize
    from .channels import set_widths
    for kind, argument in transforms:
        if kind == "binarize":
            binarize(model, argument)
        elif kind == "ternarize":
            ternarize(model, argument)
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
    meta = header.get("meta")
    model = model_from_meta(meta, where=str(path))
    try:
        replay(model, header.get("transforms", []))
        model.load_state_dict(state)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise DataError(f"{path}: its tensors do not fit the network it names ({str(exc).splitlines()[0]})") from None
    model.eval()
    return model, meta


register_checkpoint_reader(".vzc", load_compressed)
