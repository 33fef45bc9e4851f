"""Targets beyond classification, measured: Grad-CAM against UCAG(Grad-CAM) on the sample
model's binary ("cat vs rest") and multi-label heads (docs/algorithm.md §3.1), side by side
in one run on the five bundled photos.

Each image is explained for its head's predicted side or label (the binary head's side is
its sign; the multi-label head's label is its largest logit), and every map is scored by
deletion (lower is better) and insertion (higher is better), whose curves follow the
target's sigmoid probability (§6). About 2 minutes on 2 cores.

Usage: python benchmarks/targets.py
"""

from __future__ import annotations

import torch
from pytorch_grad_cam import GradCAM

import ucag
from ucag.data import SAMPLE_PHOTOS, load_sample_model, sample_image
from ucag.eval import metrics as M
from ucag.targets import BinaryTarget, MultiLabelTarget, Target


def scores(head: str) -> list[tuple[str, float, float, list[float], list[float]]]:
    sample = load_sample_model(head=head)  # type: ignore[arg-type]
    x = torch.cat([sample.preprocess(sample_image(n).rgb) for n in SAMPLE_PHOTOS])
    with torch.no_grad():
        out = sample.model(x)
    targets: list[Target] = (
        [BinaryTarget(int(v > 0)) for v in out[:, 0].tolist()]
        if head == "binary"
        else [MultiLabelTarget(int(i)) for i in out.argmax(1).tolist()]
    )
    rows = []
    with GradCAM(model=sample.model, target_layers=[sample.target_layer]) as cam:
        base = torch.from_numpy(cam(input_tensor=x, targets=targets))
        with ucag.UCAG(cam) as explainer:
            ours = explainer.explain(x, targets).saliency
    for name, maps in (("Grad-CAM", base), ("UCAG(Grad-CAM)", ours)):
        deletion = M.deletion(sample.model, x, maps, targets)
        insertion = M.insertion(sample.model, x, maps, targets)
        rows.append((name, deletion.mean, insertion.mean, deletion.values.tolist(), insertion.values.tolist()))
    sides = [f"{n}: {sample.class_names[t.category or 0]}" for n, t in zip(SAMPLE_PHOTOS, targets, strict=True)]
    print(f"{head} head, targets: {', '.join(sides)}")
    return rows


def _listed(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def main() -> None:
    torch.manual_seed(0)
    print(f"{'head':<11} {'method':<15} {'deletion':>9} {'insertion':>9}")
    for head in ("binary", "multilabel"):
        rows = scores(head)
        for name, deletion, insertion, per_deletion, per_insertion in rows:
            print(
                f"{head:<11} {name:<15} {deletion:9.3f} {insertion:9.3f}   per photo: deletion {_listed(per_deletion)}, insertion {_listed(per_insertion)}"
            )
        (_, d0, i0, _, _), (_, d1, i1, _, _) = rows
        print(f"{head:<11} UCAG / Grad-CAM  deletion x{d1 / d0:.2f}, insertion x{i1 / i0:.2f}")


if __name__ == "__main__":
    main()
