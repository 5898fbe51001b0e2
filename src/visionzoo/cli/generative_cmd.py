"""`visionzoo eval` of a generative run (task "generative"): FID of its samples against a split of its data,
in the features of the reference classifier the run recorded, and `fid_floor`, the FID of as many training
images against the same split (what a perfect generator would score with that many samples); a
conditional network also reports `class_accuracy`, a DiscoGAN `fid_ab` and `fid_ba`, a run on 2-D
points `modes_covered` and `high_quality`. The samples are those of the run's final test (same noise),
so `eval` on the test split repeats the summary's test values."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import UsageError
from .report import measures_text, print_evaluation


def _reference(meta: dict, device, batch_size: int):
    """The run's FID reference, checked to be the very file it was trained with."""
    from ..tasks.generative import ReferenceFeatures
    record = meta.get("fid_reference")
    if not record:
        raise UsageError(f"{meta['name']} was trained with --fid-reference none: there are no features to "
                         "measure FID in")
    if not Path(record["path"]).exists():
        raise UsageError(f"the run's FID reference {record['path']} is gone; FID in other features would not "
                         "compare with the run's own")
    reference = ReferenceFeatures(record["path"], device=device, batch_size=batch_size)
    if reference.sha256 != record["sha256"]:
        raise UsageError(f"the FID reference {record['path']} changed since the run (sha256 differs); FID in its "
                         "new features would not compare with the run's own")
    return reference


def run_generative_eval(args, model, meta: dict) -> int:
    from ..core.runtime import resolve_device
    from ..data.generative import load_generative_data
    from ..tasks.generative import (
        carve_splits,
        sample_scores,
        split_domains,
        translated_coverage,
        translation_scores,
    )
    device = resolve_device(args.device)
    model = model.to(device).eval()
    spec = args.data or meta["data"]
    data_args = dict(meta.get("data_args", {}))
    data = load_generative_data(spec, data_dir=args.data_dir, **data_args)
    splits = carve_splits(data, val_size=data_args.get("val_size", 5000), seed=data_args.get("seed", 0))
    batch_size = args.batch_size or meta.get("eval", {}).get("batch_size", 500)
    n, seed = meta.get("fid_samples", 10000), data_args.get("seed", 0)
    points = "output_shape" in meta
    reference = None if points else _reference(meta, device, batch_size)
    if meta.get("kind") == "discogan" and points:   # two-domain points: G_AB(A) among B's modes
        result, _ = translated_coverage(model, split_domains(splits)[args.split][0], data.domain_modes[1],
                                        data.mode_std, n=n, device=device, batch_size=batch_size)
    elif meta.get("kind") == "discogan":
        result, _ = translation_scores(model, split_domains(splits), args.split, n=n, reference=reference, seed=seed,
                                       device=device, batch_size=batch_size)
    else:
        modes = (data.modes, data.mode_std) if points else None
        result = sample_scores(model, splits, args.split, n=n, seed=seed, reference=reference,
                               classes=meta.get("classes"), modes=modes, device=device, batch_size=batch_size)
    result = {"split": args.split, **result, "model": meta["name"], "data": spec,
              "fid_reference": meta.get("fid_reference")}
    features = f", features of {reference.meta['name']} ({reference.path})" if reference else ""
    return print_evaluation(args, result, f"samples{features}",
                            measures_text(result, *(key for key, value in result.items() if isinstance(value, float))))
