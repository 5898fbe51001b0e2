"""Compression toolkit: the notes' pruning, Deep Compression, XNOR-Net and knowledge distillation.

Han et al. 2015 (pruning, dropout-ratio adjustment) → `prune.py`; Han, Mao, Dally, "Deep
Compression", ICLR 2016 (weight sharing Eqs. 1–3, CSR with relative indices, Huffman coding) →
`quantize.py`, `sparse.py`, `huffman.py`, `fileformat.py`; Rastegari et al., "XNOR-Net", ECCV 2016
→ `binarize.py`; Li & Liu, "Ternary Weight Networks", 2016 and Zhu et al., "Trained Ternary
Quantization", ICLR 2017 → `ternary.py`; Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017 → `channels.py`;
Hinton et al. 2015 (distillation, through the trainer's KD loss) → `pipeline.py`.

    from visionzoo.compress import compress, Options
    report = compress("runs/lenet", "deep", "runs/lenet-deep", Options(sparsity=0.9))
    model, meta = visionzoo.weights.load_checkpoint("runs/lenet-deep")   # the dense model back
"""
from .pipeline import METHODS, Options, compress

__all__ = ["compress", "Options", "METHODS"]
