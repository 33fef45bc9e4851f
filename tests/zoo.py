"""The model zoo sweep: the suggested CAM layer and UCAG(GradCAM) on one model of every
timm architecture family, every torchvision classification builder and every Hugging Face
``AutoModelForImageClassification`` architecture that builds from a small config, with
random weights at small sizes (docs/model_zoo.md).

For each model, :func:`check` asserts the rules of ``ucag.layer_suggestion`` (the layer
runs once per forward, keeps the batch, and outputs a spatial map, a channels-last map or a
grid of tokens as it says) and that ``UCAG(GradCAM, model=m)`` gives a finite, non-constant
map that changes when half of the image is replaced. A model may instead be refused with a
reason, listed in :data:`REFUSED`; the test fails on any other outcome.

``tests/test_model_zoo.py`` runs it (marked slow); ``python tests/zoo.py`` prints the
markdown table of docs/model_zoo.md.
"""

from __future__ import annotations

import contextlib
import gc
import io
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

#: The smallest model (by parameter count, counted on the meta device) of every timm
#: module that registers classification models, timm 1.0.31. Where timm builds a shallower
#: variant from keyword arguments, the family's rules are checked on that (same blocks,
#: fewer of them), to keep the sweep within its time.
TIMM: dict[str, tuple[str, dict[str, Any]]] = {
    "beit": ("beit_base_patch16_224", {"depth": 2, "img_size": 128}),
    "byoanet": ("halonet_h1", {}),
    "byobnet": ("test_byobnet", {}),
    "cait": ("cait_xxs24_224", {"depth": 2, "img_size": 128}),
    "coat": ("coat_tiny", {}),
    "convit": ("convit_tiny", {"depth": 3, "local_up_to_layer": 2, "img_size": 128}),
    "convmixer": ("convmixer_768_32", {}),  # built with 4 blocks of 256 channels: TIMM_CLASSES
    "convnext": ("test_convnext", {}),
    "cpubone": ("cpubone_nano", {}),
    "crossvit": ("crossvit_tiny_240", {}),
    "csatv2": ("csatv2", {}),
    "cspnet": ("cs3darknet_focus_s", {}),
    "cspnext": ("cspnext_tiny", {}),
    "davit": ("davit_tiny", {"depths": (1, 1, 1, 1)}),
    "deepseek_vit": ("deepseek_vit_412m", {"depth": 2, "embed_dim": 128, "num_heads": 2}),
    "deit": ("deit_tiny_patch16_224", {"img_size": 128}),
    "densenet": ("densenet121", {}),
    "dla": ("dla46x_c", {}),
    "dpn": ("dpn48b", {}),
    "edgenext": ("edgenext_xx_small", {}),
    "efficientformer": ("efficientformer_l1", {}),
    "efficientformer_v2": ("efficientformerv2_s0", {}),
    "efficientnet": ("test_efficientnet", {}),
    "efficientvim": ("efficientvim_m1", {}),
    "efficientvit_mit": ("efficientvit_b0", {}),
    "efficientvit_msra": ("efficientvit_m0", {}),
    "eva": ("vit_tiny_patch16_dinov3_qkvb", {"depth": 2}),
    "fasternet": ("fasternet_t0", {}),
    "fastvit": ("fastvit_t8", {}),
    "focalnet": ("focalnet_tiny_srf", {}),
    "gcvit": ("gcvit_xxtiny", {}),
    "gemma4_vit": ("gemma4_vit_167m", {"depth": 2}),
    "ghostnet": ("ghostnet_050", {}),
    "hardcorenas": ("hardcorenas_b", {}),
    "hgnet": ("hgnetv2_b0", {}),
    "hiera": ("hiera_tiny_224", {}),
    "hieradet_sam2": ("sam2_hiera_tiny", {}),
    "hrnet": ("hrnet_w18_small", {}),
    "iformer": ("iformer_t", {}),
    "inception_next": ("inception_next_atto", {}),
    "inception_resnet_v2": ("inception_resnet_v2", {}),
    "inception_v3": ("inception_v3", {}),
    "inception_v4": ("inception_v4", {}),
    "lcnetv2": ("lcnetv2_small", {}),
    "levit": ("levit_128s", {}),
    "lowformer": ("lowformer_b0", {}),
    "mambaout": ("test_mambaout", {}),
    "maxxvit": ("test_coatnet", {}),
    "metaformer": ("poolformerv2_s12", {}),
    "mlp_mixer": ("gmlp_ti16_224", {"img_size": 128}),
    "mobilenetv3": ("mobilenetv3_small_050", {}),
    "mobilenetv5": ("mobilenetv5_base", {}),
    "mobilevit": ("mobilevit_xxs", {}),
    "mvitv2": ("mvitv2_tiny", {}),
    "naflexvit": ("naflexvit_base_patch16_parfac_gap", {"depth": 2}),
    "nasnet": ("nasnetalarge", {}),
    "nest": ("nest_tiny", {}),
    "nextvit": ("nextvit_small", {}),
    "nfnet": ("test_nfnet", {}),
    "pit": ("pit_ti_224", {}),
    "pnasnet": ("pnasnet5large", {}),
    "pvt_v2": ("pvt_v2_b0", {}),
    "qwen3_vit": ("qwen3_vit_88m", {"depth": 2}),
    "rdnet": ("rdnet_tiny", {}),
    "regnet": ("regnetx_002", {}),
    "repghost": ("repghostnet_050", {}),
    "repvit": ("repvit_m1", {}),
    "res2net": ("res2next50", {}),
    "resnest": ("resnest14d", {}),
    "resnet": ("test_resnet", {}),
    "resnetv2": ("resnetv2_18", {}),
    "rexnet": ("rexnet_100", {}),
    "selecsls": ("selecsls42", {}),
    "senet": ("legacy_seresnet18", {}),
    "sequencer": ("sequencer2d_s", {"layers": (1, 1, 1, 1)}),
    "shvit": ("shvit_s1", {}),
    "sknet": ("skresnet18", {}),
    "starnet": ("starnet_s050", {}),
    "swiftformer": ("swiftformer_xs", {}),
    "swin_transformer": ("swin_tiny_patch4_window7_224", {"depths": (1, 1, 2, 2)}),
    "swin_transformer_v2": ("swinv2_tiny_window16_256", {"depths": (1, 1, 2, 2)}),
    "swin_transformer_v2_cr": ("swinv2_cr_tiny_224", {"depths": (1, 1, 2, 2)}),
    "tiny_vit": ("tiny_vit_5m_224", {}),
    "tnt": ("tnt_s_legacy_patch16_224", {"depth": 2}),
    "tresnet": ("tresnet_m", {}),
    "twins": ("twins_svt_small", {}),
    "vgg": ("vgg11", {}),
    "visformer": ("visformer_tiny", {}),
    "vision_transformer": ("test_vit", {}),
    "vision_transformer_hybrid": ("vit_tiny_r_s16_p8_224", {}),
    "vision_transformer_relpos": ("test_vit_relpos", {}),
    "vision_transformer_sam": ("samvit_base_patch16_224", {"depth": 2, "img_size": 128}),
    "vitamin": ("vitamin_small_224", {}),
    "volo": ("volo_d1_224", {}),
    "vovnet": ("ese_vovnet19b_slim_dw", {}),
    "xception": ("legacy_xception", {}),
    "xception_aligned": ("xception41p", {}),
    "xcit": ("xcit_nano_12_p8_224", {"depth": 2}),
}

#: Families whose registered variants all stack so many random blocks that the output no
#: longer depends on the input; the sweep builds the same class shallower.
TIMM_CLASSES: dict[str, Callable[[], nn.Module]] = {
    "convmixer": lambda: __import__("timm").models.convmixer.ConvMixer(
        dim=256, depth=4, kernel_size=9, patch_size=7, num_classes=10
    ),
}

#: Input size of the sweep for models that take any size.
SIZE = 128


#: Models that need another input size than :data:`SIZE` for their own forward pass.
SIZES: dict[str, int] = {
    "halonet_h1": 256,
    "maxvit_t": 224,
    # windows of 7 x 7 tokens and attention biases for one resolution
    "SwinForImageClassification": 224,
    "DonutSwinForImageClassification": 224,
}

#: UCAG options for models whose forward pass fails on UCAG's default patch size and that
#: say nowhere which sizes they take (docs/model_zoo.md lists them): the patches at sizes
#: the model takes.
UCAG_OPTIONS: dict[str, dict[str, Any]] = {
    "csatv2": {"scaled_size": SIZE},  # patchifies by reshaping into 8 x 8 blocks
    "dla46x_c": {"scaled_size": SIZE},  # adds maps of stages that halve odd sides differently
    "halonet_h1": {"scaled_size": 256},  # attention over 8 x 8 blocks with halos at every stage
    "hrnet_w18_small": {"scaled_size": SIZE},
    "maxvit_t": {"scaled_size": 224},  # window partitions of 7 x 7 at every stage: multiples of 224
    "LevitForImageClassification": {"scaled_size": SIZE},  # attention biases for the config's image size only
    "LevitForImageClassificationWithTeacher": {"scaled_size": SIZE},
    "sam2_hiera_tiny": {"scaled_size": SIZE},
    "tresnet_m": {"scaled_size": SIZE},  # space-to-depth stem: multiples of 4
}

#: Models ucag refuses, with (a pattern of) the reason it gives.
REFUSED: dict[str, str] = {
    # models whose input is not an image batch: ucag cannot trace them
    "ImageGPTForImageClassification": "cannot trace a forward pass",  # colour-cluster token ids
    "Siglip2ForImageClassification": "cannot trace a forward pass",  # patches (B, N, 3 P P) and their positions
    # a learnt array of latents reads the image by cross-attention: no grid of the image
    "PerceiverForImageClassificationLearned": "comes before its attention .* cannot lay out as a grid",
    # returns hidden states without logits (transformers 5.24)
    "PPLCNetForImageClassification": r"must return \(B, K\) logits",
    # the class token reads patch tokens that each block computes from a second, batch-folded
    # stream of pixel tokens: no layer's output is a grid of the image
    "tnt_s_legacy_patch16_224": "comes before its attention .* cannot lay out as a grid",
}


@dataclass
class ZooModel:
    """One model of the sweep: its library, family, name and how to build it."""

    library: str
    family: str
    name: str
    build: Callable[[], nn.Module]

    @property
    def size(self) -> int:
        return SIZES.get(self.name, SIZE)

    @property
    def ucag_options(self) -> dict[str, Any]:
        return UCAG_OPTIONS.get(self.name, {})


@dataclass
class ZooResult:
    """What :func:`check` found: the suggested layer and its reason, or why the model was
    refused, and the seconds it took."""

    model: ZooModel
    layer: str = ""
    reason: str = ""
    refused: str = ""
    unbuilt: str = ""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def timm_models() -> list[ZooModel]:
    import timm

    def build(name: str, kwargs: dict[str, Any]) -> Callable[[], nn.Module]:
        return lambda: timm.create_model(name, pretrained=False, num_classes=10, **kwargs)

    return [
        ZooModel("timm", family, name, TIMM_CLASSES.get(family) or build(name, kwargs))
        for family, (name, kwargs) in TIMM.items()
    ]


#: Keyword arguments of torchvision builders: the inception nets without their training-time
#: auxiliary heads, ViTs at a small image size, MaxViT at the sweep's size.
TORCHVISION_OPTIONS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
    "vit_b_16": {"image_size": SIZE},
    "vit_b_32": {"image_size": SIZE},
    "vit_l_16": {"image_size": SIZE},
    "vit_l_32": {"image_size": SIZE},
    "vit_h_14": {"image_size": 112},
}


def torchvision_models() -> list[ZooModel]:
    import torchvision

    def build(name: str) -> Callable[[], nn.Module]:
        return lambda: torchvision.models.get_model(
            name, weights=None, num_classes=10, **TORCHVISION_OPTIONS.get(name, {})
        )

    names = torchvision.models.list_models(module=torchvision.models)
    return [ZooModel("torchvision", _torchvision_family(name), name, build(name)) for name in names]


def _torchvision_family(name: str) -> str:
    """resnet18 -> resnet, vgg11_bn -> vgg, wide_resnet50_2 -> wide_resnet, regnet_y_8gf -> regnet."""
    return "wide_resnet" if name.startswith("wide_resnet") else re.split(r"[_\d]", name)[0]


#: Hugging Face config attributes set small where a config has them (nested vision configs
#: too), so that every architecture builds in well under a second.
HF_SMALL: dict[str, Any] = {
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 2,
    "embed_dim": 16,
    "image_size": SIZE,
    "num_labels": 10,
}


def _shrunk(config: Any) -> Any:
    for key, value in HF_SMALL.items():
        if isinstance(getattr(config, key, None), int) and not isinstance(getattr(config, key), bool):
            setattr(config, key, value)
    for key in ("depths", "num_heads"):
        values = getattr(config, key, None)
        if isinstance(values, (list, tuple)) and values and all(isinstance(v, int) for v in values):
            setattr(config, key, [1] * len(values) if key == "depths" else [min(v, 2) for v in values])
    for key, sub in vars(config).items():
        if key.endswith("_config") and hasattr(sub, "to_dict"):  # vision_config, text_config
            _shrunk(sub)
    return config


def _unit_norms(model: nn.Module) -> nn.Module:
    """Norm layers reset to scale 1 and shift 0: Hugging Face draws some norm scales from
    N(0, 0.02), and 50 such layers in a row (EfficientNet-B7) leave no signal at all."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and module.weight is not None:
                module.weight.fill_(1.0)
                if module.bias is not None:
                    module.bias.zero_()
    return model


def _config_image_size(config: Any) -> int:
    size = getattr(config, "image_size", None) or getattr(getattr(config, "vision_config", None), "image_size", None)
    return size if isinstance(size, int) else SIZE


def transformers_models() -> list[ZooModel]:
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    def build(model_type: str, class_name: str) -> Callable[[], nn.Module]:
        def make() -> nn.Module:
            return _unit_norms(_make())

        def _make() -> nn.Module:
            cls = getattr(transformers, class_name)
            config = transformers.AutoConfig.for_model(model_type)
            config.num_labels = 10
            try:
                model = cls(_shrunk(config)).eval()
                size = _config_image_size(model.config)
                with torch.no_grad():
                    model(torch.zeros(1, 3, size, size))
                return model
            except Exception:  # shapes that must agree in ways the small config breaks: the default config
                config = transformers.AutoConfig.for_model(model_type)
                config.num_labels = 10
                with torch.device("meta"):
                    parameters = sum(p.numel() for p in cls(config).parameters())
                if parameters > 400_000_000:
                    raise RuntimeError(
                        f"no small config works, and its default config has {parameters / 1e9:.1f}B parameters"
                    ) from None
                return cls(config)

        return make

    entries = []
    for model_type, names in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES.items():
        for class_name in [names] if isinstance(names, str) else names:
            entries.append(ZooModel("transformers", model_type, class_name, build(model_type, class_name)))
    return entries


def timm_families() -> set[str]:
    """Every timm module that registers a classification model."""
    import timm
    from timm.models import _registry

    return {_registry._model_to_module[name] for name in timm.list_models()}


def _silently(build: Callable[[], nn.Module]) -> nn.Module:
    """The model, built quietly with seed 0, in eval mode; a weight its library initialises
    to zero (timm zeroes some classifier heads, so every gradient would be zero) drawn at
    random instead."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = build().eval()
    with torch.no_grad():
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter) and not weight.any():
                # a zeroed head draws random weights; a zeroed norm scale (Hugging Face's
                # EfficientNet and MobileViT zero-initialise some) becomes 1
                weight.normal_(0, 0.02) if weight.dim() >= 2 else weight.fill_(1.0)
    return model


def check(entry: ZooModel) -> ZooResult:
    """The rules and the UCAG map for one model (see the module docstring); AssertionError
    when a rule fails, a :class:`ZooResult` with ``refused`` set when ucag refuses the
    model with a ValueError."""
    from pytorch_grad_cam import GradCAM

    import ucag

    start = time.perf_counter()
    result = ZooResult(entry)
    try:
        model = _silently(entry.build)
    except Exception as err:  # an optional library missing, a config the class cannot use
        result.unbuilt = f"{type(err).__name__}: {str(err).strip().splitlines()[0]}"
        return result
    m = ucag.models.model_size_multiple(model)
    size = ucag.models.model_input_size(model) or ((entry.size // m * m,) * 2)
    try:
        suggestion = ucag.layer_suggestion(model, size)
    except ValueError as err:
        result.refused = str(err)
        result.seconds = time.perf_counter() - start
        return result
    result.layer, result.reason = suggestion.name, suggestion.reason
    # the rules, on a batch of 3 at the traced size
    runs: list[torch.Tensor] = []

    def record(module: nn.Module, args: Any, output: Any) -> None:
        runs.append(output)

    x = torch.randn(3, 3, *size, generator=torch.Generator().manual_seed(0))
    handle = suggestion.layer.register_forward_hook(record)
    try:
        with torch.no_grad(), suggestion.attached():
            model(x)
    finally:
        handle.remove()
    assert len(runs) == 1, f"{entry.name}: {suggestion.name} ran {len(runs)} times"
    out = runs[0]
    assert isinstance(out, torch.Tensor) and out.shape[0] == 3, (
        f"{entry.name}: {suggestion.name} gives {getattr(out, 'shape', type(out))} for a batch of 3"
    )
    expected_dims = {"NCHW": 4, "NHWC": 4, "tokens": 3}[suggestion.layout]
    assert out.dim() == expected_dims, f"{entry.name}: {suggestion.layout} layer gives {tuple(out.shape)}"
    assert suggestion.reshape_transform is None or suggestion.reshape_transform(out).dim() == 4
    # UCAG(GradCAM): finite, not constant, and it follows the image
    image = x[:1]
    changed = image.clone()
    half = size[1] // 2
    changed[..., half:] = torch.randn(1, 3, size[0], size[1] - half, generator=torch.Generator().manual_seed(1))
    try:
        with ucag.UCAG(GradCAM, model=model, units=2, **entry.ucag_options) as explainer:
            first = explainer.explain(image, [1]).raw
            second = explainer.explain(changed, [1]).raw
    except (ValueError, TypeError) as err:
        result.refused = str(err)
        result.seconds = time.perf_counter() - start
        return result
    scale = float(first.abs().max())
    assert torch.isfinite(first).all() and torch.isfinite(second).all(), f"{entry.name}: a map that is not finite"
    assert float(first.std()) > 1e-6 * max(scale, 1e-30) and scale > 0, f"{entry.name}: a constant map"
    # a random network may barely see its input (a few 1e-4 of the map); a map that ignores
    # the image changes only through the patch weights' rounding (below 1e-6)
    assert float((first - second).abs().max()) > 1e-5 * scale, f"{entry.name}: the map does not follow the image"
    result.details = {"layout": suggestion.layout, "shape": tuple(out.shape)}
    result.seconds = time.perf_counter() - start
    del model, explainer
    gc.collect()  # grad-cam's hooks and the model form cycles: free the big models now
    return result


def all_models() -> list[ZooModel]:
    """Every model of the sweep: timm, torchvision, Hugging Face."""
    return timm_models() + torchvision_models() + transformers_models()


#: The columns of docs/model_zoo.md's table.
COLUMNS = ("library", "family", "model", "suggested layer", "outcome", "why this layer (or why refused)")


def outcome(result: ZooResult) -> str:
    """The table's outcome cell: "pass", "pass with <options>", "refused" or "not built"."""
    if result.unbuilt:
        return "not built"
    if result.refused:
        return "refused"
    options = ", ".join(f"{k}={v}" for k, v in result.model.ucag_options.items())
    return f"pass with {options}" if options else "pass"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def document(results: list[ZooResult]) -> str:
    """docs/model_zoo.md: what the sweep checks, the counts, and one row per model."""
    unbuilt = [r for r in results if r.unbuilt]
    families = {(r.model.library, r.model.family) for r in results if not r.unbuilt}
    refused = {(r.model.library, r.model.family) for r in results if r.refused}
    options = [r for r in results if r.model.ucag_options and not r.refused]
    taps = [r for r in results if "@" in r.layer]
    lines = [
        "# The suggested layer on every model family",
        "",
        "`tests/test_model_zoo.py` (marked slow; part of `./dev test`) builds one model of every",
        "timm architecture family (the smallest variant, sometimes with fewer blocks), every",
        "torchvision classification builder and every Hugging Face `AutoModelForImageClassification`",
        "architecture (from a small config), with random weights, and checks on each:",
        "",
        "- `ucag.layer_suggestion(model)` gives a layer that runs once per forward pass, whose",
        "  output keeps the batch and is laid out as the suggestion says (a spatial map,",
        "  channels-last map or grid of tokens; docs/algorithm.md §8.1);",
        "- `UCAG(GradCAM, model=model, units=2)` gives a finite map that is not constant and",
        "  changes when half of the image is replaced.",
        "",
        f"Inputs are {SIZE} x {SIZE} px, or the size a model takes. A model may instead be refused",
        "by ucag with a reason. This table is written by `python tests/zoo.py > docs/model_zoo.md`;",
        "the test fails when it is out of date.",
        "",
        f"{len(results) - len(unbuilt)} models of {len(families)} families: {len(families) - len(refused)} families pass, {len(refused)} refused. "
        f"{len(unbuilt)} Hugging Face classes do not build here (an optional library missing, or no config for images), listed as not built. "
        f"{len(taps)} suggestions are taps (a shared activation module or an activation applied as a function). "
        f"{len(options)} models fail in their own forward pass at UCAG's default patch size and pass with the `scaled_size` given "
        "(they need sizes that they say nowhere ucag can read).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in results:
        e = r.model
        layer = f"`{r.layer}`" if r.layer else "—"
        lines.append(
            f"| {e.library} | {e.family} | `{e.name}` | {layer} | {outcome(r)} | {_cell(r.unbuilt or r.refused or r.reason)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    torch.set_num_threads(2)
    done = []
    for entry in all_models():
        try:
            done.append(check(entry))
        except AssertionError as err:
            print(f"FAILED {entry.library}:{entry.name}: {err}", file=sys.stderr)
            raise
        print(f"{entry.library}:{entry.name} {done[-1].seconds:.1f} s", file=sys.stderr)
    sys.stdout.write(document(done))
