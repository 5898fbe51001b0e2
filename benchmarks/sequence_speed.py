"""Our sequence networks against the same networks built from torch's modules (issue 25's speed target).

- `lstm_lm` (Graves' skip-connected LSTM language model, models/language.py) against the same network
  with one `nn.LSTM` per layer (the skips feed every layer the input beside the layer below, so the
  layers cannot be one multi-layer `nn.LSTM`), our weights copied into it (to_torch_network_state).
- `transformer_small` (models/transformer_nmt.py) against the same encoder–decoder whose stacks are
  `nn.Transformer`'s, with its weights copied into ours (from_torch_transformer); both share our
  embeddings and output projection, so only the stacks differ.

Training steps (forward, cross-entropy, backward, SGD step) and inference forwards take turns in a
rotating order, `--repeats` times (side_by_side.py); ratio = the median of ours / torch within a
repeat (> 1: ours faster), reported as tokens per second (sequences × tokens per sequence).
`--control` adds a copy of the torch network (A/A); `--clock cpu` times CPU seconds, for a shared machine.

    .venv/bin/python benchmarks/sequence_speed.py [--networks lstm_lm,transformer_small] [--batch-size 16]
        [--length 100] [--vocab 68] [--repeats 6] [--steps 3] [--dtype fp32|bf16] [--threads N] [--control]
        [--clock wall|cpu]
"""
from __future__ import annotations

import argparse
import copy
import sys

import torch
import torch.nn.functional as F
from side_by_side import add_comparison_options, compare_row, start_table
from torch import nn

import visionzoo as vz
from visionzoo.layers.recurrent import to_torch_network_state
from visionzoo.models.transformer_nmt import from_torch_transformer


class LogitsOnly(nn.Module):
    """A language model's logits for a batch of tokens (the carried state dropped)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens):
        return self.model(tokens)[0]


class TorchSkipLSTM(nn.Module):
    """Graves' skip-connected LSTM language model with one nn.LSTM per layer: the weights of `ours`."""

    def __init__(self, ours):
        super().__init__()
        self.vocab_size = ours.vocab_size
        self.layers = nn.ModuleList()
        for layer in ours.layers:
            twin = nn.LSTM(layer.input_size, layer.hidden_size, batch_first=True)
            twin.load_state_dict(to_torch_network_state(layer))
            self.layers.append(twin)
        self.head = copy.deepcopy(ours.head)

    def forward(self, tokens):
        x = F.one_hot(tokens, self.vocab_size).to(self.head.weight.dtype)
        hidden, below = [], None
        for layer in self.layers:
            below, _ = layer(x if below is None else torch.cat([x, below], -1))
            hidden.append(below)
        return self.head(torch.cat(hidden, -1))


class Translate(nn.Module):
    """A translation network's logits for fixed target prefixes, so that it takes one input (the sources)."""

    def __init__(self, model: nn.Module, target: torch.Tensor):
        super().__init__()
        self.model, self.target = model, target

    def forward(self, source):
        return self.model(source, self.target)


class TorchStackTransformer(nn.Module):
    """Our Transformer's shared embedding (and the output projection through it) around nn.Transformer's
    stacks: the same network as `ours` with the stacks swapped."""

    def __init__(self, ours, stacks: nn.Transformer):
        super().__init__()
        if ours.tgt_embed is not None or ours.generator is not None:
            raise SystemExit("the comparison builds the shared-embedding Transformer (share_embeddings=True)")
        self.pad, self.embed, self.stacks = ours.pad, copy.deepcopy(ours.src_embed), stacks

    def forward(self, source, target):
        length = target.shape[1]
        hidden = self.stacks(self.embed(source), self.embed(target),
                             tgt_mask=nn.Transformer.generate_square_subsequent_mask(length), tgt_is_causal=True,
                             src_key_padding_mask=source == self.pad, memory_key_padding_mask=source == self.pad)
        return F.linear(hidden, self.embed.embedding.weight)


def lstm_pair(args, generator):
    torch.manual_seed(0)
    ours = vz.create_model("lstm_lm", num_classes=args.vocab)
    theirs = TorchSkipLSTM(ours)
    tokens = torch.randint(0, args.vocab, (args.batch_size, args.length + 1), generator=generator)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    return LogitsOnly(ours), theirs, inputs, targets


def transformer_pair(args, generator):
    torch.manual_seed(0)
    ours = vz.create_model("transformer_small", num_classes=args.vocab_nmt, dropout=0.0)
    layer = ours.encoder[0]   # nn.Transformer's stacks shaped as ours
    stacks = nn.Transformer(ours.d_model, layer.self_attn.num_heads, len(ours.encoder), len(ours.decoder),
                            layer.ff.linear1.out_features, dropout=0.0, batch_first=True, norm_first=layer.norm_first)
    ours.load_state_dict(from_torch_transformer(stacks), strict=False)   # clones: the two train apart
    theirs_model = TorchStackTransformer(ours, stacks)
    source = torch.randint(4, args.vocab_nmt, (args.batch_size, args.length), generator=generator)
    target = torch.randint(4, args.vocab_nmt, (args.batch_size, args.length + 1), generator=generator)
    return (Translate(ours, target[:, :-1]), Translate(theirs_model, target[:, :-1]), source, target[:, 1:])


PAIRS = {"lstm_lm": lstm_pair, "transformer_small": transformer_pair}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", default="lstm_lm,transformer_small")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=100, help="tokens per sequence (source and target)")
    parser.add_argument("--vocab", type=int, default=68, help="the language model's vocabulary (kjv's characters)")
    parser.add_argument("--vocab-nmt", type=int, default=8000, help="the translation vocabulary")
    add_comparison_options(parser, repeats=6, steps=3)
    args = parser.parse_args()
    start_table(args, f"batch {args.batch_size} × {args.length} tokens", "network", "torch", "tokens")
    generator = torch.Generator().manual_seed(0)
    for name in args.networks.split(","):
        ours, theirs, inputs, targets = PAIRS[name](args, generator)
        loss = lambda logits: F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        compare_row(args, name, ours, theirs, inputs, loss, per_sample=args.length)
    return 0


if __name__ == "__main__":
    sys.exit(main())
