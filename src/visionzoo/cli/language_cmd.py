"""`visionzoo eval` and `visionzoo sample` of a language run (task "language": Graves, "Generating
Sequences With Recurrent Neural Networks", 2013, §3 Table 1's measures and §5.4's biased sampling).

eval: bits per character, perplexity per word and the loss (nats per token) of the run's network
on a split of its text (tasks/language.py), read with the vocabulary saved in model.json as
`--batch-size` parallel streams (default: as the run's validation, so that the numbers repeat it).
sample: `--n` continuations of `--prompt` (default: a line start), `--length` tokens each, drawn
with the temperature T or Graves' probability bias b (softmax of the logits × (1 + b) / T), from
the generator of `--seed`; printed and written to DIR/samples.txt.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import UsageError
from .report import print_evaluation

DEFAULT_LENGTH = 200


def _vocabulary(meta: dict):
    from ..data.text import Vocabulary
    return Vocabulary.from_json(meta.get("vocab"), "model.json")


def run_language_eval(args, model, meta: dict) -> int:
    """A language run's network (weights.load_checkpoint) evaluated on a split of its text."""
    from ..core.runtime import resolve_device
    from ..data.text import load_text_data
    from ..tasks.language import EVAL_STREAMS, dynamic_measures, language_measures, stream_loss
    device = resolve_device(args.device)
    model = model.to(device)
    vocab = _vocabulary(meta)
    spec = args.data or meta["data"]
    data = load_text_data(spec, data_dir=args.data_dir, level=vocab.level, vocab=vocab)
    tokens = data.split(args.split)
    nats, count = stream_loss(model, tokens, bptt=meta.get("bptt", 100), streams=args.batch_size or EVAL_STREAMS,
                              device=device)
    chars, words = data.chars[args.split], data.words[args.split]
    measures = language_measures(nats, count, len(tokens), chars, words)
    result = {"split": args.split, "n": measures["n"], "bpc": measures["bpc"], "perplexity": measures["perplexity"],
              "loss": measures["loss"], "level": vocab.level, "model": meta["name"], "data": spec}
    if args.dynamic_eval:   # as the run's own test does: one stream, learning as it reads
        dynamic = dynamic_measures(model, tokens, args.dynamic_eval, bptt=meta.get("bptt", 100), chars=chars,
                                   words=words)
        result = {**result, **{f"{key}_static": result[key] for key in ("bpc", "perplexity", "loss")},
                  "n": dynamic["n"], "bpc": dynamic["bpc"], "perplexity": dynamic["perplexity"],
                  "loss": dynamic["loss"], "dynamic_eval": args.dynamic_eval}
    return print_evaluation(args, result, f"{vocab.level}s", f"bpc {result['bpc']:.4f}  perplexity "
                            f"{result['perplexity']:.2f}  loss {result['loss']:.4f}"
                            + (f"  (dynamic evaluation, rate {args.dynamic_eval}; static bpc "
                               f"{result['bpc_static']:.4f})" if args.dynamic_eval else ""))


def run_language_sample(args, model, meta: dict) -> int:
    """`visionzoo sample` of a language run: continuations of --prompt, printed and written to samples.txt."""
    import torch

    from ..core.io import write_text
    from ..core.runtime import resolve_device
    from ..data.text import END_OF_LINE
    from ..models.language import sample
    if getattr(args, "class_", None) is not None or getattr(args, "truncation", None) is not None:
        raise UsageError(f"--class and --truncation are for generative runs; {args.run_dir} is a language run")
    vocab = _vocabulary(meta)
    if args.prompt is None:            # start at a line break
        line_end = "\n" if vocab.level == "char" else END_OF_LINE
        if line_end not in vocab.stoi:
            raise UsageError(f"{args.run_dir}: its vocabulary has no line break to start from; give --prompt TEXT")
        prompt_tokens, shown = torch.tensor([vocab.stoi[line_end]]), ""
    else:
        try:
            prompt_tokens, shown = vocab.encode(args.prompt), args.prompt
        except UsageError as exc:
            raise UsageError(f"--prompt: {exc}") from None
        if len(prompt_tokens) == 0:
            raise UsageError(f"--prompt {args.prompt!r} has no {vocab.level}s to continue; give some text")
    device = resolve_device(args.device)
    model = model.to(device)
    length = args.length or DEFAULT_LENGTH
    temperature = args.temperature if args.temperature is not None else 1.0
    bias = args.bias if args.bias is not None else 0.0
    generator = torch.Generator().manual_seed(args.seed)
    joiner = "" if vocab.level == "char" or not shown else " "
    texts = [shown + joiner + vocab.decode(sample(model, prompt_tokens, length, temperature=temperature, bias=bias,
                                                   generator=generator).tolist())
             for _ in range(args.n)]
    out = Path(args.out)
    write_text(out / "samples.txt", "".join(f"--- sample {i + 1} (seed {args.seed}, temperature {temperature:g}, "
                                            f"bias {bias:g})\n{text}\n" for i, text in enumerate(texts)))
    if args.json:
        print(json.dumps({"run": str(args.run_dir), "model": meta["name"], "seed": args.seed, "n": len(texts),
                          "temperature": temperature, "bias": bias, "out": str(out), "samples": texts}))
        return 0
    for i, text in enumerate(texts):
        print(f"--- sample {i + 1}\n{text}")
    print(f"{len(texts)} samples written to {out / 'samples.txt'}")
    return 0
