"""`visionzoo translate RUN "TEXT" … [--beam K]` and `visionzoo eval` of a translation run (task
"translation": Sutskever et al. 2014, Bahdanau et al. 2015, Vaswani et al. 2017).

translate: each TEXT (or, for "-", each line of standard input) translated by the run's network with
the subword vocabulary saved in its model.json, printed one line per input in order; `--beam K`
(default: the run's) searches with length normalisation α (`--length-penalty`, default the run's),
`--beam 0` decodes greedily; `--ensemble RUN2` (repeatable) averages the next-token distributions of
several runs trained with the same vocabulary (Sutskever's ensembles).
eval: BLEU (sacrebleu's corpus BLEU, the run's beam) and the teacher-forced loss (nats per target
token) on a split of the run's data: keys bleu, loss, split, n.
"""
from __future__ import annotations

import json
import sys

from ..core.errors import UsageError
from ..core.options import argument, at_least
from .arguments import add_device, add_json
from .report import print_evaluation


def _vocabulary(meta: dict, where: str):
    from ..data.translation import SubwordVocabulary
    return SubwordVocabulary.from_json(meta.get("vocab"), where)


def run_translation_eval(args, model, meta: dict) -> int:
    """A translation run's network (weights.load_checkpoint) evaluated on a split of its data."""
    from ..core.runtime import resolve_device
    from ..data.translation import encode_pairs, load_parallel
    from ..metrics.bleu import bleu
    from ..tasks.translation import teacher_forced_loss, translate
    device = resolve_device(args.device)
    model = model.to(device)
    vocab = _vocabulary(meta, "model.json")
    spec = args.data or meta["data"]
    pairs = load_parallel(spec, args.data_dir).split(args.split)
    nats, count = teacher_forced_loss(model, encode_pairs(pairs, vocab), device)
    beam = meta.get("beam", 4)
    hypotheses = translate(model, vocab, [s for s, _ in pairs], beam=beam, alpha=meta.get("length_penalty", 1.0),
                           device=device, batch_size=args.batch_size or 100)
    result = {"split": args.split, "n": len(pairs), "bleu": bleu(hypotheses, [t for _, t in pairs]),
              "loss": nats / max(count, 1), "beam": beam, "model": meta["name"], "data": spec}
    return print_evaluation(args, result, f"sentence pairs, beam {beam}",
                            f"BLEU {result['bleu']:.2f}  loss {result['loss']:.4f}")


def _not_utf8(text: str) -> bool:
    """Whether `text` came from bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def run_translate(args) -> int:
    from ..core.runtime import resolve_device
    from ..tasks.translation import translate
    from ..weights import check_task, load_checkpoint
    runs = [args.run_dir, *(args.ensemble or [])]
    loaded = [load_checkpoint(run) for run in runs]
    for run, (_, meta) in zip(runs, loaded):
        check_task(meta, run, "translation", "translate", "--model transformer_small")
    texts = [line.rstrip("\n") for line in sys.stdin] if args.text == ["-"] else list(args.text)
    undecodable = next((number for number, text in enumerate(texts, 1) if _not_utf8(text)), None)
    if undecodable is not None:
        raise UsageError(f"sentence {undecodable} ({texts[undecodable - 1][:30]!r}…) is not UTF-8 text; give the "
                         "sentences in UTF-8")
    vocab = _vocabulary(loaded[0][1], f"{runs[0]}/model.json")
    for run, (_, meta) in zip(runs[1:], loaded[1:]):
        if meta.get("vocab") != loaded[0][1].get("vocab"):
            raise UsageError(f"--ensemble {run}: its subword vocabulary differs from {runs[0]}'s; an ensemble "
                             "averages distributions over one vocabulary")
    if not texts or any(not text.strip() for text in texts):
        raise UsageError("give the sentences to translate (non-empty), or - to read them from standard input")
    meta = loaded[0][1]
    beam = meta.get("beam", 4) if args.beam is None else args.beam
    alpha = meta.get("length_penalty", 1.0) if args.length_penalty is None else args.length_penalty
    device = resolve_device(args.device)
    models = [model.to(device) for model, _ in loaded]
    outputs = translate(models, vocab, texts, beam=beam, alpha=alpha, device=device)
    if args.json:
        print(json.dumps({"runs": [str(run) for run in runs], "beam": beam, "length_penalty": alpha,
                          "translations": [{"source": s, "translation": t} for s, t in zip(texts, outputs)]}))
        return 0
    for output in outputs:
        print(output)
    return 0


def add_commands(commands) -> None:
    p = commands.add_parser("translate", help="translate sentences with a trained translation run")
    p.add_argument("run_dir", metavar="RUN", help="run directory of a translation model (or its model.safetensors)")
    p.add_argument("text", nargs="+", metavar="TEXT", help="sentences to translate, one output line each; - reads "
                                                          "standard input, one sentence a line")
    p.add_argument("--beam", type=argument(int, at_least(0)), help="beam width K (default: the run's; 0 = greedy)")
    p.add_argument("--length-penalty", type=argument(float, at_least(0)), metavar="α",
                   help="rank hypotheses by log P / length^α (default: the run's)")
    p.add_argument("--ensemble", action="append", metavar="RUN", help="another run to average with (repeatable)")
    add_device(p)
    add_json(p)
    p.set_defaults(run=run_translate)
