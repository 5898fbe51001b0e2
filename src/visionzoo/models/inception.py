"""The Inception family: GoogLeNet, BN-Inception, Inception-v3, Inception-v4, Inception-ResNet-v1/v2.

* ``googlenet_paper`` — Szegedy et al., "Going Deeper with Convolutions", CVPR 2015, Table 1 and
  Fig. 3 exactly: no BN, convolutions with biases, LRN after the first pool and after conv3
  (the notes' constants), 5×5 branches, 3×3/2 max-pools, dropout 40 %, and the first layer as
  Table 1 counts it (2.7K params, 34M ops: a depthwise-separable 7×7/2 with depth multiplier 8).
  Its per-layer parameters are checked against Table 1 in tests/test_inception.py.
* ``googlenet`` — torchvision's layout with identical parameter names, so its state_dict loads as
  is: BN after every convolution (bias-free), a dense 7×7 first layer, no LRN, a 3×3 where the
  paper has the 5×5 (torchvision's long-standing choice, kept for its weights) and a 2×2/2
  last max-pool. Both have the two auxiliary classifiers of Sec. 5 after 4a and 4d.
* ``bn_inception`` — Ioffe & Szegedy, "Batch Normalization", ICML 2015, Fig. 5, without LRN and
  dropout (Sec. 4.2.1); its filter columns make 4c–4e 608/608/1056 channels wide, as in the
  released Caffe model, where the figure's output column prints 576/576/1024.
* ``inception_v3_paper`` — Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016,
  Table 1 row by row (the notes print it): conv 3×3/2 → conv 3×3 → conv 3×3 padded → 3×3/2
  max-pool → conv 3×3 (80) → conv 3×3/2 (192) → conv 3×3 padded (288) → 3 × Inception of Fig. 5
  (35×35×288) → grid reduction (Fig. 10) → 5 × Inception of Fig. 6 (17×17×768) → grid reduction →
  2 × Inception of Fig. 7 (8×8×1280 → 2048) → 8×8 pool → linear → softmax, the map sides
  299 → 149 → 147 → 147 → 73 → 71 → 35 → 35 → 17 → 8 → 1 (checked row by row in
  tests/test_paper_tables.py), with the BN auxiliary head on the last 17×17 module (Table 3's
  "BN-auxiliary" row). The table gives no branch widths: the modules are torchvision's (the
  authors' released ones), the fifth Fig. 6 module taking the 160-wide 7×7 factorisation of its
  neighbours. The abstract's figures: under 25M parameters, 5 billion multiply-adds.
* ``inception_v3`` — the same paper as the authors released it (TF-slim, hence torchvision, whose
  names and layout we keep so its weights load): its stem replaces Table 1's last three rows by a
  1×1 conv to 80 on the 73×73 grid, a 3×3 conv to 192 (73 → 71) and a 3×3/2 max-pool (71 → 35),
  so the 35×35 stage starts 192 wide and its Fig. 5 modules widen it to 256 and 288 instead of a
  288-wide convolution; the 17×17 stage has four Fig. 6 modules, not five; the 8×8 stage and
  the head are Table 1's (two Fig. 7 modules, 1280 → 2048, pooled over the whole 8×8 map). We keep
  both: the paper's network is what the notes' table describes, the released one is what every
  pretrained Inception-v3 is (23.8M parameters, 5.7G MACs against the paper's 25M, 5G).
* ``inception_v4``, ``inception_resnet_v1``, ``inception_resnet_v2`` — Szegedy, Ioffe, Vanhoucke,
  Alemi, "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
  AAAI 2017, Figs. 9 and 15 with Table 1's Reduction-A filters; v4 and Inception-ResNet-v2 follow
  timm (the authors' TF-slim release) name for name — for Inception-ResNet-v2 that release has
  the v3-style stem and a 320-wide 35×35 grid instead of Fig. 3's stem and 384.

Auxiliary classifiers: in training mode ``model(x)`` returns ``(logits, [aux1, aux2])`` and the
loss is ``CE(logits) + model.aux_weight · Σ CE(aux_i)`` (0.3 for GoogLeNet, Sec. 5; 0.4 for v3,
the authors' TF-slim training setting); in eval mode only the logits. ``aux_logits=False`` builds
no auxiliary heads. Label smoothing (v3 Sec. 7) belongs to the trainer's loss, not the network.

Feature stages: the last stage before each grid reduction, and the last stage (timm's choice
for v3 and Inception-ResNet-v2) — conv1, conv3, inception3b, 4e, 5b for GoogLeNet (LRN 2 instead
of conv3 in the paper's network); conv1, conv3, inception3b, 4d, 5b for BN-Inception, whose 3c
and 4e reduce the grid themselves. Inception-v4 taps, as timm does, Mixed3a (features.3), the
first layer of the 1/4 grid, rather than Mixed4a after it.

Small-input adaptation (``image_size`` < 64 for GoogLeNet/BN-Inception, < 75 — torchvision's
minimum — for the 299-px networks, or ``small_input=True``): the stem keeps the grid — a 3×3
stride-1 first convolution (GoogLeNet, BN-Inception) or stride-1, "same"-padded stem
convolutions, and no stem max-pools (the v4 stem's stride-2 pool|conv pairs become stride 1).
A 28×28 image then meets the Inception modules at 28×28 (GoogLeNet: 28/14/7 as in Table 1; the
299-px networks: 28/13/6), and the auxiliary heads pool adaptively when their grid is smaller
than the paper's.

Initialisation (none of the papers gives one): He et al. normal, fan-in, for convolutions — it keeps
the BN-free ``googlenet_paper`` trainable — N(0, 0.01) for linear layers, zero biases, BN γ=1, β=0.
"""
from __future__ import annotations

from torch import nn

from ..layers import inception as L
from ..layers.lrn import LocalResponseNorm
from ..registry import register_model
from .base import ImageClassifier

_GOOGLENET = "Szegedy et al. Going Deeper with Convolutions. CVPR 2015"
_BN = "Ioffe, Szegedy. Batch Normalization: Accelerating Deep Network Training by Reducing " \
      "Internal Covariate Shift. ICML 2015"
_V3 = "Szegedy, Vanhoucke, Ioffe, Shlens, Wojna. Rethinking the Inception Architecture for " \
      "Computer Vision. CVPR 2016"
_V4 = "Szegedy, Ioffe, Vanhoucke, Alemi. Inception-v4, Inception-ResNet and the Impact of " \
      "Residual Connections on Learning. AAAI 2017"
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) and m.bias is not None:
            nn.init.zeros_(m.bias)


class Inception(ImageClassifier):
    """Named stages in order → global average pool → dropout → linear.

    `feature_stages` names the stages whose outputs are the feature maps. `aux` maps a stage name
    to ``(head name, head)``: the head reads that stage's output in training.
    `transform_input` re-normalises ImageNet-normalised input to the (x − 0.5)/0.5 scaling that
    torchvision's Google-trained googlenet/inception_v3 weights expect (its flag of that name).
    """

    def __init__(self, stages, num_features, num_classes, feature_stages, classifier="fc", drop_rate=0.0,
                 aux=None, aux_weight=0.0, transform_input=False):
        super().__init__()
        self.num_classes, self.num_features = num_classes, num_features
        self.stage_names = [name for name, _ in stages]
        self.feature_stages = list(feature_stages)
        for name, module in stages:
            self.add_module(name, module)
        self.aux_taps = {}
        for tap, (head_name, head) in (aux or {}).items():
            self.add_module(head_name, head)
            self.aux_taps[tap] = head_name
        self.aux_weight = aux_weight
        self.transform_input = transform_input
        self.head_drop = nn.Dropout(drop_rate)
        self.classifier_name = classifier
        self.add_module(classifier, nn.Linear(num_features, num_classes))
        init_weights(self)

    def _stages(self, x, aux_out=None):
        if self.transform_input:
            std, mean = (x.new_tensor(v).view(1, -1, 1, 1) for v in (_IMAGENET_STD, _IMAGENET_MEAN))
            x = x * (std / 0.5) + (mean - 0.5) / 0.5
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if aux_out is not None and name in self.aux_taps:
                aux_out.append(getattr(self, self.aux_taps[name])(x))
        return x

    def stage_modules(self):
        return self.feature_stages

    def forward_features(self, x):
        return self._stages(x)

    def forward(self, x):
        if not (self.training and self.aux_taps):
            return super().forward(x)
        aux = []
        x = self._stages(x, aux)
        return self.forward_head(x), aux

    def reset_classifier(self, num_classes: int) -> None:
        """Also resets the auxiliary heads (k > 0) or removes them (k = 0: no logits to train)."""
        super().reset_classifier(num_classes)
        for tap, head_name in list(self.aux_taps.items()):
            if num_classes > 0:
                getattr(self, head_name).reset_classifier(num_classes)
            else:
                delattr(self, head_name)
                del self.aux_taps[tap]


def _small(image_size, small_input, threshold):
    if small_input is not None:
        return small_input
    return image_size is not None and image_size < threshold


def _stem(in_chans, rows, small):
    """Stem rows ``(name, out, kernel, stride, valid)`` or ``(name,)`` for a 3×3/2 max-pool; a
    small-input stem has stride 1, "same" padding and no max-pools."""
    stages, cin = [], in_chans
    for name, *conv in rows:
        if not conv:
            stages.append((name, nn.Identity() if small else nn.MaxPool2d(3, 2)))
            continue
        cout, k, stride, valid = conv
        stride, padding = (1, None) if small else (stride, 0 if valid else None)
        stages.append((name, L.BasicConv2d(cin, cout, k, stride, padding)))
        cin = cout
    return stages, cin


# ---- GoogLeNet, BN-Inception ---------------------------------------------------------------

# Table 1: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj; None is a 3×3/2 max-pool.
_TABLE1 = (("inception3a", (64, 96, 128, 16, 32, 32)), ("inception3b", (128, 128, 192, 32, 96, 64)),
           ("maxpool3", None),
           ("inception4a", (192, 96, 208, 16, 48, 64)), ("inception4b", (160, 112, 224, 24, 64, 64)),
           ("inception4c", (128, 128, 256, 24, 64, 64)), ("inception4d", (112, 144, 288, 32, 64, 64)),
           ("inception4e", (256, 160, 320, 32, 128, 128)),
           ("maxpool4", None),
           ("inception5a", (256, 160, 320, 32, 128, 128)),
           ("inception5b", (384, 192, 384, 48, 128, 128)))

# Fig. 5: #1×1, #3×3 reduce, #3×3, double #3×3 reduce, double #3×3, pool, proj, stride.
_FIG5 = (("inception3a", (64, 64, 64, 64, 96, "avg", 32, 1)),
         ("inception3b", (64, 64, 96, 64, 96, "avg", 64, 1)),
         ("inception3c", (0, 128, 160, 64, 96, "max", 0, 2)),
         ("inception4a", (224, 64, 96, 96, 128, "avg", 128, 1)),
         ("inception4b", (192, 96, 128, 96, 128, "avg", 128, 1)),
         ("inception4c", (160, 128, 160, 128, 160, "avg", 128, 1)),
         ("inception4d", (96, 128, 192, 160, 192, "avg", 128, 1)),
         ("inception4e", (0, 128, 192, 192, 256, "max", 0, 2)),
         ("inception5a", (352, 192, 320, 160, 224, "avg", 128, 1)),
         ("inception5b", (352, 192, 320, 192, 224, "max", 128, 1)))


def _v1_stem(in_chans, small, paper_exact):
    """7×7/2 conv → 3×3/2 max-pool → (LRN) → 1×1 conv 64 → 3×3 conv 192 → (LRN) → 3×3/2 max-pool."""
    norm = not paper_exact
    if small:
        conv1 = L.BasicConv2d(in_chans, 64, 3, norm=norm)
    elif paper_exact:
        conv1 = L.SeparableConv2d(in_chans, 64, 7, 2, depth_multiplier=8)
    else:
        conv1 = L.BasicConv2d(in_chans, 64, 7, 2)

    def pool():
        return nn.Identity() if small else nn.MaxPool2d(3, 2, ceil_mode=True)
    stages = [("conv1", conv1), ("maxpool1", pool())]
    stages += [("lrn1", LocalResponseNorm())] if paper_exact else []
    stages += [("conv2", L.BasicConv2d(64, 64, 1, norm=norm)),
               ("conv3", L.BasicConv2d(64, 192, 3, norm=norm))]
    stages += [("lrn2", LocalResponseNorm())] if paper_exact else []
    return stages + [("maxpool2", pool())]


def _googlenet(num_classes=1000, in_chans=3, image_size=None, small_input=None, aux_logits=True,
               transform_input=False, paper_exact=False):
    stages, cin, aux = _v1_stem(in_chans, _small(image_size, small_input, 64), paper_exact), 192, {}
    for name, row in _TABLE1:
        if row is None:
            last = name == "maxpool4" and not paper_exact
            stages.append((name, nn.MaxPool2d(2 if last else 3, 2, ceil_mode=True)))
            continue
        module = L.googlenet_module(cin, *row, norm=not paper_exact, k5=5 if paper_exact else 3)
        stages.append((name, module))
        cin = module.out_channels
        if aux_logits and name in ("inception4a", "inception4d"):
            head = f"aux{len(aux) + 1}"
            aux[name] = (head, L.GoogLeNetAux(cin, num_classes, norm=not paper_exact))
    feature_stages = ("conv1", "lrn2" if paper_exact else "conv3", "inception3b", "inception4e",
                      "inception5b")
    return Inception(stages, cin, num_classes, feature_stages, drop_rate=0.4, aux=aux,
                     aux_weight=0.3 if aux else 0.0, transform_input=transform_input)


_AUX_EXCLUDED = ("the paper's figure leaves out the training-only auxiliary classifiers, "
                 "which the card counts")
register_model("googlenet", family="inception", paper=_GOOGLENET, year=2014, paper_params="6.8M",
               paper_macs="1.5G", twins={"torchvision": "googlenet"},
               mismatch_reason=_AUX_EXCLUDED + " (2 × 3.19M; without them 6.62M, −2.6 %: torchvision's "
               "BN layout has a dense 7×7 first layer and 3×3 instead of 5×5 branches)")(_googlenet)
register_model("googlenet_paper", family="inception", paper=_GOOGLENET, year=2014, paper_params="6.8M",
               paper_macs="1.5G", paper_exact=True,
               mismatch_reason=_AUX_EXCLUDED + " (2 × 3.19M); Table 1's "
               "6.8M is its rows' sum in K = 1024 and without biases, i.e. 6.96M weights — ours, "
               "biases included, is 6.99M")(_googlenet)


@register_model(family="inception", paper=_BN, year=2015, paper_macs="2.03G")
def bn_inception(num_classes=1000, in_chans=3, image_size=None, small_input=None):
    stages, cin = _v1_stem(in_chans, _small(image_size, small_input, 64), paper_exact=False), 192
    for name, (*row, stride) in _FIG5:
        module = L.bn_inception_module(cin, *row, stride=stride)
        stages.append((name, module))
        cin = module.out_channels
    feature_stages = ("conv1", "conv3", "inception3b", "inception4d", "inception5b")
    return Inception(stages, cin, num_classes, feature_stages)


# ---- Inception-v3 -------------------------------------------------------------------------

_V3_STEM = (("Conv2d_1a_3x3", 32, 3, 2, True), ("Conv2d_2a_3x3", 32, 3, 1, True),
            ("Conv2d_2b_3x3", 64, 3, 1, False), ("maxpool1",), ("Conv2d_3b_1x1", 80, 1, 1, True),
            ("Conv2d_4a_3x3", 192, 3, 1, True), ("maxpool2",))


@register_model(family="inception", paper=_V3, year=2015, input_size=(3, 299, 299), paper_params="24M",
                paper_macs="5.7G", twins={"torchvision": "inception_v3", "timm": "inception_v3"},
                mismatch_reason=_AUX_EXCLUDED + " (3.33M; without it 23.83M, within the 24M) — timm's "
                "inception_v3 has no auxiliary head: load it with aux_logits=False")
def inception_v3(num_classes=1000, in_chans=3, image_size=None, small_input=None, aux_logits=True,
                 transform_input=False):
    stages, _ = _stem(in_chans, _V3_STEM, _small(image_size, small_input, 75))
    stages += [("Mixed_5b", L.InceptionV3A(192, 32)), ("Mixed_5c", L.InceptionV3A(256, 64)),
               ("Mixed_5d", L.InceptionV3A(288, 64)), ("Mixed_6a", L.InceptionV3B(288)),
               ("Mixed_6b", L.InceptionV3C(768, 128)), ("Mixed_6c", L.InceptionV3C(768, 160)),
               ("Mixed_6d", L.InceptionV3C(768, 160)), ("Mixed_6e", L.InceptionV3C(768, 192)),
               ("Mixed_7a", L.InceptionV3D(768)), ("Mixed_7b", L.InceptionV3E(1280)),
               ("Mixed_7c", L.InceptionV3E(2048))]
    aux = {"Mixed_6e": ("AuxLogits", L.InceptionV3Aux(768, num_classes))} if aux_logits else {}
    feature_stages = ("Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e", "Mixed_7c")
    return Inception(stages, 2048, num_classes, feature_stages, drop_rate=0.2, aux=aux,
                     aux_weight=0.4 if aux else 0.0, transform_input=transform_input)


# Table 1 as printed: 3×3/2, 3×3, 3×3 padded, pool, 3×3, 3×3/2, 3×3 padded (row name, width,
# kernel, stride, valid).
_V3_PAPER_STEM = (("Conv2d_1a_3x3", 32, 3, 2, True), ("Conv2d_2a_3x3", 32, 3, 1, True),
                  ("Conv2d_2b_3x3", 64, 3, 1, False), ("maxpool1",), ("Conv2d_3a_3x3", 80, 3, 1, True),
                  ("Conv2d_3b_3x3", 192, 3, 2, True), ("Conv2d_4a_3x3", 288, 3, 1, False))
# The 7×7 factorisation width of each of Table 1's five Fig. 6 modules.
_V3_PAPER_C7 = (128, 160, 160, 160, 192)


@register_model(family="inception", paper=_V3, year=2015, input_size=(3, 299, 299), paper_params="25M",
                paper_macs="5G", mismatch_reason="the abstract's round figures (\"less than 25 million "
                "parameters\", \"5 billion multiply-adds\") fit the released layout (23.8M, 5.7G); Table 1 "
                "with those branch widths has a 288-wide stem convolution and a fifth Fig. 6 module: 26.1M "
                "without the training-only auxiliary head (3.33M), 6.5G MACs")
def inception_v3_paper(num_classes=1000, in_chans=3, image_size=None, small_input=None, aux_logits=True):
    stages, _ = _stem(in_chans, _V3_PAPER_STEM, _small(image_size, small_input, 75))
    stages += [(f"Mixed_5{letter}", L.InceptionV3A(288, 64)) for letter in "bcd"]
    stages += [("Mixed_6a", L.InceptionV3B(288))]
    stages += [(f"Mixed_6{letter}", L.InceptionV3C(768, c7)) for letter, c7 in zip("bcdef", _V3_PAPER_C7)]
    stages += [("Mixed_7a", L.InceptionV3D(768)), ("Mixed_7b", L.InceptionV3E(1280)),
               ("Mixed_7c", L.InceptionV3E(2048))]
    aux = {"Mixed_6f": ("AuxLogits", L.InceptionV3Aux(768, num_classes))} if aux_logits else {}
    feature_stages = ("Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6f", "Mixed_7c")
    return Inception(stages, 2048, num_classes, feature_stages, drop_rate=0.2, aux=aux,
                     aux_weight=0.4 if aux else 0.0)


# ---- Inception-v4, Inception-ResNet ---------------------------------------------------------

@register_model(family="inception", paper=_V4, year=2016, input_size=(3, 299, 299), paper_params="48M",
                paper_macs="13G", twins={"timm": "inception_v4"},
                mismatch_reason="the notes' 48M / 13B come from EfficientNet's Table 2; the paper gives "
                "no count, and its Figs. 3–9 (as released in TF-slim, and timm) have 42.68M params "
                "and 12.25G MACs at 299×299")
def inception_v4(num_classes=1000, in_chans=3, image_size=None, small_input=None):
    small = _small(image_size, small_input, 75)
    rows = (("0", 32, 3, 2, True), ("1", 32, 3, 1, True), ("2", 64, 3, 1, False))
    stem, _ = _stem(in_chans, rows, small)
    features = [m for _, m in stem] + [L.Mixed3a(small), L.Mixed4a(small), L.Mixed5a(small)]
    features += [L.inception_v4_a() for _ in range(4)] + [L.reduction_a(384, 192, 224, 256, 384)]
    features += [L.inception_v4_b() for _ in range(7)] + [L.reduction_v4_b()]
    features += [L.InceptionV4C() for _ in range(3)]
    feature_stages = [f"features.{i}" for i in (2, 3, 9, 17, 21)]
    return Inception([("features", nn.Sequential(*features))], 1536, num_classes, feature_stages,
                     "last_linear", 0.2)


def _repeat(n, *branches, channels, scale):
    return nn.Sequential(*(L.InceptionResNetBlock(channels, *branches, scale=scale) for _ in range(n)))


# Branches of Inception-ResNet-A/B/C (v1: Figs. 10, 11, 13; v2 as released: Figs. 16, 17, 19).
_V1_A = ([(32, 1)], [(32, 1), (32, 3)], [(32, 1), (32, 3), (32, 3)])
_V1_B = ([(128, 1)], [(128, 1), (128, (1, 7)), (128, (7, 1))])
_V1_C = ([(192, 1)], [(192, 1), (192, (1, 3)), (192, (3, 1))])
_V2_A = ([(32, 1)], [(32, 1), (32, 3)], [(32, 1), (48, 3), (64, 3)])
_V2_B = ([(192, 1)], [(128, 1), (160, (1, 7)), (192, (7, 1))])
_V2_C = ([(192, 1)], [(192, 1), (224, (1, 3)), (256, (3, 1))])


@register_model(family="inception", paper=_V4, year=2016, input_size=(3, 299, 299))
def inception_resnet_v1(num_classes=1000, in_chans=3, image_size=None, small_input=None):
    """Fig. 15 with the stem of Fig. 14: 5 × A (35×35×256), Reduction-A (k, l, m, n = 192, 192,
    256, 384), 10 × B (17×17×896), Reduction-B, 5 × C (8×8×1792); residual scales 0.17/0.1/0.2
    as in the authors' Inception-ResNet-v2 release. The paper gives no parameter or MAC count."""
    rows = (("conv2d_1a", 32, 3, 2, True), ("conv2d_2a", 32, 3, 1, True), ("conv2d_2b", 64, 3, 1, False),
            ("maxpool_3a",), ("conv2d_3b", 80, 1, 1, True), ("conv2d_4a", 192, 3, 1, True),
            ("conv2d_4b", 256, 3, 2, True))
    stages, _ = _stem(in_chans, rows, _small(image_size, small_input, 75))
    stages += [("repeat", _repeat(5, *_V1_A, channels=256, scale=0.17)),
               ("mixed_6a", L.reduction_a(256, 192, 192, 256, 384)),
               ("repeat_1", _repeat(10, *_V1_B, channels=896, scale=0.10)),
               ("mixed_7a", L.reduction_resnet_b(896, 384, 256, (256, 256))),
               ("repeat_2", _repeat(5, *_V1_C, channels=1792, scale=0.20))]
    feature_stages = ("conv2d_2b", "conv2d_4a", "repeat", "repeat_1", "repeat_2")
    return Inception(stages, 1792, num_classes, feature_stages, "classif", 0.2)


@register_model(family="inception", paper=_V4, year=2016, input_size=(3, 299, 299), paper_params="56M",
                paper_macs="13G", twins={"timm": "inception_resnet_v2"})
def inception_resnet_v2(num_classes=1000, in_chans=3, image_size=None, small_input=None):
    rows = (("conv2d_1a", 32, 3, 2, True), ("conv2d_2a", 32, 3, 1, True), ("conv2d_2b", 64, 3, 1, False),
            ("maxpool_3a",), ("conv2d_3b", 80, 1, 1, True), ("conv2d_4a", 192, 3, 1, True),
            ("maxpool_5a",))
    stages, _ = _stem(in_chans, rows, _small(image_size, small_input, 75))
    mixed_5b = L.Mixed(192, L.numbered([(96, 1)], [(48, 1), (64, 5)], [(64, 1), (96, 3), (96, 3)],
                                       [nn.AvgPool2d(3, 1, 1, count_include_pad=False), (64, 1)]))
    stages += [("mixed_5b", mixed_5b),
               ("repeat", _repeat(10, *_V2_A, channels=320, scale=0.17)),
               ("mixed_6a", L.reduction_a(320, 256, 256, 384, 384)),
               ("repeat_1", _repeat(20, *_V2_B, channels=1088, scale=0.10)),
               ("mixed_7a", L.reduction_resnet_b(1088, 384, 288, (288, 320))),
               ("repeat_2", _repeat(9, *_V2_C, channels=2080, scale=0.20)),
               ("block8", L.InceptionResNetBlock(2080, *_V2_C, scale=1.0, activate=False)),
               ("conv2d_7b", L.BasicConv2d(2080, 1536, 1))]
    feature_stages = ("conv2d_2b", "conv2d_4a", "repeat", "repeat_1", "conv2d_7b")
    return Inception(stages, 1536, num_classes, feature_stages, "classif", 0.2)
