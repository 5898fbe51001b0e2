"""`visionzoo eval` of a sequence-regression run (task "sequence-regression": the adding problem of
Hochreiter & Schmidhuber 1997, Sec. 5.4; tasks/sequence_regression.py): the mean squared error, the
loss (the same number) and R² of the run's network on a split of its data, as text or one JSON object."""
from __future__ import annotations

from .report import print_evaluation


def run_sequence_regression_eval(args, model, meta: dict) -> int:
    """A sequence-regression run's model and model.json (weights.load_checkpoint) evaluated on a split."""
    from ..core.errors import UsageError
    from ..core.runtime import resolve_device
    from ..data.synthetic_sequences import load_sequence_data
    from ..tasks.sequence_regression import regression_measures
    device = resolve_device(args.device)
    model = model.to(device)
    spec = args.data or meta["data"]
    data = load_sequence_data(spec, **dict(meta.get("data_args", {})))
    if data.features != meta["features"]:
        raise UsageError(f"--data {spec} has {data.features} features per step, the network reads "
                         f"{meta['features']}; evaluate on data like its training data")
    result = regression_measures(model, data.split(args.split), device=device,
                                 batch_size=args.batch_size or meta.get("eval", {}).get("batch_size", 500))
    result = {"split": args.split, "n": result["n"], "mse": result["mse"], "loss": result["loss"],
              "r2": result["r2"], "model": meta["name"], "data": spec}
    return print_evaluation(args, result, "sequences", f"mse {result['mse']:.6f}  r2 {result['r2']:.4f}")
