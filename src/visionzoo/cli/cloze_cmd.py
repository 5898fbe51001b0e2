"""`visionzoo eval` of a cloze run (task "cloze": Hermann et al., "Teaching Machines to Read and
Comprehend", NeurIPS 2015; the notes' Table 3 measure): top-1 accuracy of the answers chosen among
each document's entities and the mean cross-entropy, on a split of the run's data read with the
vocabulary saved in model.json (tasks/cloze.py)."""
from __future__ import annotations

from .report import measures_text, print_evaluation


def run_cloze_eval(args, model, meta: dict) -> int:
    """A cloze run's network (weights.load_checkpoint) evaluated on a split of its questions."""
    from ..core.runtime import resolve_device
    from ..data.cloze import load_cloze_data
    from ..data.text import Vocabulary
    from ..tasks.cloze import EVAL_BATCH, cloze_measures
    device = resolve_device(args.device)
    model = model.to(device)
    vocab = Vocabulary.from_json(meta.get("vocab"), "model.json")
    spec = args.data or meta["data"]
    data = load_cloze_data(spec, data_dir=args.data_dir, vocab=vocab)
    measures = cloze_measures(model, data.encode(args.split), data.entities, device,
                              batch_size=args.batch_size or EVAL_BATCH)
    result = {"split": args.split, "n": measures["n"], "top1": measures["top1"], "loss": measures["loss"],
              "model": meta["name"], "data": spec}
    return print_evaluation(args, result, "questions", measures_text(result, "top1", "loss"))
