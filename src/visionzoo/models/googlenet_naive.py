"""GoogLeNet built from naïve Inception modules: Szegedy et al., "Going Deeper with Convolutions",
CVPR 2015, Fig. 2(a) in place of Fig. 2(b) in every module of Table 1.

``googlenet_naive`` is models/inception.py's GoogLeNet (the BN layout of ``googlenet``, with the
paper's 5×5 branches and 3×3/2 max-pools) whose nine modules keep Table 1's #1×1, #3×3 and #5×5
widths but drop the 3×3/5×5 reductions and the pool projection (layers/inception.py's
`naive_inception_module`). The pooling branch passes its input's channels on, so each module is
wider than the one before: 192 → 416 → 832 → 1280 → … → 4944 channels at 5b instead of 1024, and
the 3×3 and 5×5 convolutions read those full widths. That growth is Sec. 4's argument for the 1×1
reductions ("a computational blow up within a few stages"); the card shows its price: 104.3M
parameters and 12.6 G MACs at 224 px against ``googlenet_paper``'s 13.4M and 1.5 G (both with their
auxiliary heads).

Figures: the paper describes this network only to reject it and prints no parameter or
operation count for it (the card has none). Table 1's 3a row gives the reduced module's 128M
operations; the naïve 3a on the same 28×28×192 input costs 28²·192·(64 + 9·128 + 25·32) = 303M
multiply-adds (tests/test_table_networks_rest.py checks both).
"""
from __future__ import annotations

from torch import nn

from ..layers import inception as L
from ..registry import register_model
from .inception import _GOOGLENET, _TABLE1, Inception, _small, _v1_stem


@register_model(family="inception", paper=_GOOGLENET + " (Fig. 2(a), the naïve module)", year=2014)
def googlenet_naive(num_classes=1000, in_chans=3, image_size=None, small_input=None, aux_logits=True):
    """Table 1's GoogLeNet with every module naïve; the auxiliary classifiers of Sec. 5 after 4a and 4d."""
    stages, cin, aux = _v1_stem(in_chans, _small(image_size, small_input, 64), paper_exact=False), 192, {}
    for name, row in _TABLE1:
        if row is None:
            stages.append((name, nn.MaxPool2d(3, 2, ceil_mode=True)))
            continue
        ch1x1, _, ch3x3, _, ch5x5, _ = row   # the reductions and the pool projection are what Fig. 2(b) adds
        module = L.naive_inception_module(cin, ch1x1, ch3x3, ch5x5)
        stages.append((name, module))
        cin = module.out_channels
        if aux_logits and name in ("inception4a", "inception4d"):
            head = f"aux{len(aux) + 1}"
            aux[name] = (head, L.GoogLeNetAux(cin, num_classes))
    feature_stages = ("conv1", "conv3", "inception3b", "inception4e", "inception5b")
    return Inception(stages, cin, num_classes, feature_stages, drop_rate=0.4, aux=aux,
                     aux_weight=0.3 if aux else 0.0)
