"""Throughput of UCAG and of the whole evaluation at fp32 and bf16, with and without channels-last.

One run, side by side, for the sample EfficientNet-Lite0 (pretrained) and a torchvision
ResNet-50 (random weights: speed only), on the bundled photos at 224 px:

1. UCAG(Grad-CAM) (36 patches of 322 px per image, the backward pass stopped at the target
   layer) at each precision and layout, and at each ``--batch-sizes`` (patches per
   forward/backward), against the bare fp32 no-grad forwards of the same patches. Best of
   ``--repeats``, the configurations interleaved so the machine's drift hits them alike.
   Images per second, the ratio to fp32 and to the bare forwards, and the peak memory of
   one call (CUDA: the allocator's peak; CPU: the process's resident high-water mark,
   reset before each call through /proc/self/clear_refs).
2. The whole ``ucag.eval.evaluate`` (photos read by a DataLoader, UCAG(Grad-CAM), deletion
   and insertion, the rows written) at fp32 and at bf16 + channels-last, images per second
   beside the explainer's; and the projected time for 50,000 ImageNet validation images.

Targets (issue 29, on CPUs with bfloat16): UCAG(Grad-CAM) at bf16 + channels-last at least
1.8x faster than fp32 on the sample model and 2.5x on ResNet-50. The faithfulness of bf16
maps is benchmarks/precision_faithfulness.py.

Usage: python benchmarks/throughput.py [--device cpu|cuda] [--images 2] [--repeats 2]
       [--batch-sizes 16,36] [--models lite0,resnet50] [--skip-evaluate] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

IMAGENET_VAL = 50_000
#: (precision, channels_last) in the order the table shows them.
CONFIGS = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5", encoding="utf-8")  # resets VmHWM to the current RSS


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def timed(fn, device: torch.device) -> tuple[float, float]:
    """Seconds and peak MiB of one call."""
    reset_peak(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, peak_mib(device)


def models(names: list[str], device: torch.device):
    import torchvision

    from ucag.data import load_sample_model

    for name in names:
        if name == "lite0":
            sm = load_sample_model()
            yield "EfficientNet-Lite0 (sample, pretrained)", sm.model.to(device), sm.target_layer, sm.mean, sm.std
        elif name == "resnet50":
            model = torchvision.models.resnet50().eval().to(device)
            yield "ResNet-50 (random weights)", model, model.layer4[-1], (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        else:
            raise SystemExit(f"--models: unknown model {name!r} (lite0, resnet50)")


def explainer_rows(label, model, layer, x, targets, batch_sizes, repeats, device) -> list[dict]:
    from pytorch_grad_cam import GradCAM

    import ucag

    cam = GradCAM(model=model, target_layers=[layer])
    candidates = {}
    for batch_size in batch_sizes:
        for precision, channels_last in CONFIGS:
            explainer = ucag.UCAG(cam, batch_size=batch_size, precision=precision, channels_last=channels_last)
            candidates[(batch_size, precision, channels_last)] = lambda e=explainer: e.explain(x, targets)
        patches = ucag.unfold(x, ucag.UCAG(cam).grid_for(tuple(x.shape[-2:])))

        def forwards(batch_size=batch_size, patches=patches):
            with torch.inference_mode():
                for s in range(0, len(patches), batch_size):
                    model(patches[s : s + batch_size])

        candidates[(batch_size, "bare fp32 forwards", False)] = forwards
    best = {key: (float("inf"), 0.0) for key in candidates}
    for fn in candidates.values():  # warm-up: oneDNN primitives, autocast caches
        fn()
    for _ in range(repeats):
        for key, fn in candidates.items():
            seconds, peak = timed(fn, device)
            if seconds < best[key][0]:
                best[key] = (seconds, max(peak, best[key][1]))
    rows = []
    for (batch_size, precision, channels_last), (seconds, peak) in best.items():
        fp32 = best[(batch_size, "fp32", False)][0]
        bare = best[(batch_size, "bare fp32 forwards", False)][0]
        rows.append(
            {
                "model": label,
                "what": "UCAG(Grad-CAM)" if precision != "bare fp32 forwards" else "bare fp32 forwards",
                "batch_size": batch_size,
                "precision": precision if precision != "bare fp32 forwards" else "fp32",
                "channels_last": channels_last,
                "seconds": seconds,
                "images_per_s": len(x) / seconds,
                "speedup_vs_fp32": fp32 / seconds,
                "vs_bare_forwards": seconds / bare,
                "peak_mib": peak,
            }
        )
    return rows


def evaluate_rows(label, model, layer, mean, std, images, repeats, device) -> list[dict]:
    from ucag.eval import evaluate

    rows = []
    for precision, channels_last in (("fp32", False), ("bf16", True)):
        best = (float("inf"), 0.0)
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as out:

                def run(out=out, precision=precision, channels_last=channels_last):
                    evaluate(
                        model,
                        layer,
                        "samples",
                        out,
                        variants=("ucag",),
                        metrics=("deletion", "insertion"),
                        mean=mean,
                        std=std,
                        limit=images,
                        progress=False,
                        plot=False,
                        precision=precision,
                        channels_last=channels_last,
                    )

                seconds, peak = timed(run, device)
            best = min(best, (seconds, peak))
        rows.append(
            {
                "model": label,
                "what": "evaluate (UCAG + deletion + insertion)",
                "batch_size": 16,
                "precision": precision,
                "channels_last": channels_last,
                "seconds": best[0],
                "images_per_s": images / best[0],
                "peak_mib": best[1],
                "projected_imagenet_val_h": IMAGENET_VAL * best[0] / images / 3600,
            }
        )
    rows[1]["speedup_vs_fp32"] = rows[0]["seconds"] / rows[1]["seconds"]
    rows[0]["speedup_vs_fp32"] = 1.0
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-sizes", default="16,36")
    parser.add_argument("--models", default="lite0,resnet50")
    parser.add_argument("--skip-evaluate", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    from ucag.data import SAMPLE_PHOTOS, sample_image

    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"{hardware}; torch {torch.__version__}; {torch.get_num_threads()} threads; {args.images} images of 224 px")
    print()
    print("| model | what | batch | precision | channels-last | images/s | vs fp32 | vs bare forwards | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    all_rows = []
    for label, model, layer, mean, std in models(args.models.split(","), device):
        from ucag.data import preprocess_image

        photos = [sample_image(SAMPLE_PHOTOS[i % len(SAMPLE_PHOTOS)]).rgb for i in range(args.images)]
        x = torch.cat([preprocess_image(p, mean, std, 224) for p in photos]).to(device)
        with torch.inference_mode():
            targets = model(x).argmax(1).tolist()
        rows = explainer_rows(label, model, layer, x, targets, batch_sizes, args.repeats, device)
        if not args.skip_evaluate:
            rows += evaluate_rows(label, model, layer, mean, std, args.images, args.repeats, device)
        for r in rows:
            vs_bare = f"{r['vs_bare_forwards']:.2f}x" if "vs_bare_forwards" in r else ""
            print(
                f"| {r['model']} | {r['what']} | {r['batch_size']} | {r['precision']} | {'yes' if r['channels_last'] else 'no'} "
                f"| {r['images_per_s']:.3f} | {r['speedup_vs_fp32']:.2f}x | {vs_bare} | {r['peak_mib']:.0f} |",
                flush=True,
            )
        all_rows += rows
    print()
    for r in all_rows:
        if "projected_imagenet_val_h" in r:
            print(
                f"{r['model']}, evaluate at {r['precision']}{' + channels-last' if r['channels_last'] else ''}: "
                f"50,000 ImageNet images in {r['projected_imagenet_val_h']:.1f} h on this {device.type}"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": hardware, "torch": torch.__version__, "rows": all_rows}, indent=2), encoding="utf-8"
        )


if __name__ == "__main__":
    main()
