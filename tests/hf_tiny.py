"""Tiny random-weight models of every architecture in ``transformers``' semantic-segmentation
and image-classification auto mappings, built from config classes (nothing is downloaded).

``TINY[(task, model_type)]`` gives the config keyword arguments; :func:`save_tiny` writes the
model and its image processor to a folder, the way a fine-tuned model is shared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Square input side (pixels) of every tiny model unless the entry says otherwise.
SIDE = 32

_VIT = dict(image_size=SIDE, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32)
_BEIT = dict(_VIT, num_hidden_layers=4, out_indices=[1, 2, 3, 4], pool_scales=[1, 2], auxiliary_channels=8,
             use_auxiliary_head=False)
_STAGES = dict(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1])
_CLIP_VISION = dict(image_size=SIDE, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                    num_attention_heads=2)
_CLIP_TEXT = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                  max_position_embeddings=16)
_SWIN = dict(image_size=SIDE, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=2)
_SEGFORMER = dict(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                  num_attention_heads=[1, 2], decoder_hidden_size=16, patch_sizes=[7, 3], strides=[4, 2],
                  mlp_ratios=[2, 2])
_MOBILEVIT = dict(image_size=SIDE, hidden_sizes=[16, 16, 16], neck_hidden_sizes=[8, 8, 16, 16, 16, 16, 32],
                  num_attention_heads=2, aspp_out_channels=16, atrous_rates=[1, 2, 3])
_MOBILEVITV2 = dict(image_size=2 * SIDE, width_multiplier=0.25, n_attn_blocks=[1, 1, 1], aspp_out_channels=16,
                    atrous_rates=[1, 2, 3])

SEG = "semantic-segmentation"
CLS = "image-classification"


def _upernet(side):
    from transformers import ConvNextConfig

    backbone = ConvNextConfig(**_STAGES, out_features=["stage1", "stage2", "stage3", "stage4"])
    return dict(backbone_config=backbone.to_dict(), hidden_size=16, auxiliary_in_channels=24, auxiliary_channels=8,
                use_auxiliary_head=False, pool_scales=[1, 2])


def _vit_hybrid(side):
    from transformers import BitConfig

    backbone = BitConfig(embedding_size=8, hidden_sizes=[8, 16, 32], depths=[1, 1, 1], num_groups=2,
                         layer_type="bottleneck", global_padding="same", out_features=["stage3"])
    return dict(_VIT, image_size=side, patch_size=1, backbone_config=backbone.to_dict(),
                backbone_featmap_shape=[1, 32, side // 16, side // 16])  # the backbone's output stride is 16


#: (task, model_type) -> config keyword arguments (a callable of the side for nested configs);
#: ``None`` for the architectures medbench refuses (``hf_export.NOT_POSSIBLE``).
TINY: dict[tuple[str, str], object] = {
    (SEG, "beit"): _BEIT,
    (SEG, "data2vec-vision"): _BEIT,
    (SEG, "dpt"): dict(_VIT, num_hidden_layers=4, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 16, 16],
                       fusion_hidden_size=16, use_auxiliary_head=False),
    (SEG, "mobilenet_v2"): dict(image_size=SIDE, depth_multiplier=0.25),
    (SEG, "mobilevit"): _MOBILEVIT,
    (SEG, "mobilevitv2"): _MOBILEVITV2,
    (SEG, "segformer"): _SEGFORMER,
    (SEG, "upernet"): _upernet,
    (SEG, "sapiens2"): dict(_VIT, num_register_tokens=2, num_key_value_attention_heads=2,
                            num_first_full_attention_layers=1, num_last_full_attention_layers=1,
                            head_config=dict(upsample_out_channels=[8], conv_out_channels=[8])),
    (SEG, "tipsv2_dpt"): dict(backbone_config=dict(_VIT, model_type="tipsv2_vision_model", num_hidden_layers=4,
                                                   out_indices=[1, 2, 3, 4], apply_layernorm=True,
                                                   reshape_hidden_states=False),
                              neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=16),
    (CLS, "beit"): _VIT,
    (CLS, "bit"): dict(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_groups=2),
    (CLS, "clip"): dict(vision_config=_CLIP_VISION, text_config=_CLIP_TEXT, projection_dim=8),
    (CLS, "convnext"): _STAGES,
    (CLS, "convnextv2"): _STAGES,
    (CLS, "cvt"): dict(embed_dim=[8, 16, 24], num_heads=[1, 1, 2], depth=[1, 2, 3]),
    (CLS, "data2vec-vision"): _VIT,
    (CLS, "deit"): _VIT,
    (CLS, "dinat"): None,  # needs natten
    (CLS, "dinov2"): _VIT,
    (CLS, "dinov2_with_registers"): dict(_VIT, num_register_tokens=2),
    (CLS, "donut-swin"): _SWIN,
    (CLS, "efficientformer"): dict(depths=[1, 1, 1, 2], hidden_sizes=[8, 16, 24, 32], dim=32, key_dim=8,
                                   num_attention_heads=2, resolution=1, num_meta3d_blocks=1, image_size=SIDE),
    (CLS, "efficientnet"): dict(image_size=SIDE, width_coefficient=0.1, depth_coefficient=0.25, hidden_dim=128),
    (CLS, "focalnet"): dict(image_size=SIDE, embed_dim=8, depths=[1, 1], hidden_sizes=[16, 32], focal_levels=[2, 2],
                            focal_windows=[3, 3]),
    (CLS, "hgnet_v2"): dict(embedding_size=8, depths=[1, 1], hidden_sizes=[16, 32], stem_channels=[3, 8, 8],
                            stage_in_channels=[8, 16], stage_mid_channels=[8, 8], stage_out_channels=[16, 32],
                            stage_num_blocks=[1, 1], stage_downsample=[False, True], stage_light_block=[False, True],
                            stage_kernel_size=[3, 3], stage_numb_of_layers=[2, 2]),
    (CLS, "hiera"): dict(embed_dim=8, image_size=[SIDE, SIDE], patch_size=[3, 3], patch_stride=[2, 2],
                         patch_padding=[1, 1], depths=[1, 1], num_heads=[1, 2], masked_unit_size=[4, 4],
                         num_query_pool=1, masked_unit_attention=[True, False]),
    (CLS, "ijepa"): _VIT,
    (CLS, "imagegpt"): dict(vocab_size=17, n_positions=SIDE * SIDE, n_embd=16, n_layer=1, n_head=2),
    (CLS, "levit"): dict(image_size=SIDE, hidden_sizes=[16, 24, 32], num_attention_heads=[1, 1, 1], depths=[1, 1, 1],
                         key_dim=[8, 8, 8]),
    (CLS, "metaclip_2"): dict(vision_config=_CLIP_VISION, text_config=_CLIP_TEXT, projection_dim=8),
    (CLS, "mobilenet_v1"): dict(image_size=SIDE, depth_multiplier=0.25),
    (CLS, "mobilenet_v2"): dict(image_size=SIDE, depth_multiplier=0.25),
    (CLS, "mobilevit"): _MOBILEVIT,
    (CLS, "mobilevitv2"): _MOBILEVITV2,
    (CLS, "nat"): None,  # needs natten
    (CLS, "perceiver"): dict(num_latents=8, d_latents=16, d_model=16, num_self_attends_per_block=1,
                             num_self_attention_heads=2, num_cross_attention_heads=1, image_size=SIDE),
    (CLS, "pp_lcnet"): dict(block_configs=[[[3, 8, 8, 1, False]], [[3, 8, 16, 2, False]], [[3, 16, 16, 2, True]],
                                           [[3, 16, 24, 2, False]], [[5, 24, 32, 2, True]]],
                            stem_channels=8, class_expand=32),
    (CLS, "poolformer"): dict(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1]),
    (CLS, "pvt"): dict(image_size=SIDE, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                       num_attention_heads=[1, 1, 1, 1], num_labels=3),
    (CLS, "pvt_v2"): dict(image_size=SIDE, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                          num_attention_heads=[1, 1, 1, 1]),
    (CLS, "regnet"): dict(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], groups_width=8),
    (CLS, "resnet"): dict(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1]),
    (CLS, "segformer"): _SEGFORMER,
    (CLS, "shieldgemma2"): None,
    (CLS, "siglip"): dict(vision_config=_CLIP_VISION, text_config=_CLIP_TEXT),
    (CLS, "siglip2"): dict(vision_config=dict(_CLIP_VISION, num_patches=16), text_config=_CLIP_TEXT),
    (CLS, "swiftformer"): dict(image_size=SIDE, depths=[1, 1, 1, 1], embed_dims=[8, 16, 24, 32]),
    (CLS, "swin"): _SWIN,
    (CLS, "swinv2"): _SWIN,
    (CLS, "textnet"): dict(stem_out_channels=8, hidden_sizes=[8, 8, 16, 16, 32], image_size=[SIDE, SIDE],
                           conv_layer_kernel_sizes=[[[3, 3]], [[3, 3]], [[3, 3]], [[3, 3]]],
                           conv_layer_strides=[[1], [2], [2], [2]]),
    (CLS, "timm_wrapper"): None,
    (CLS, "van"): dict(image_size=SIDE, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], mlp_ratios=[2, 2, 2, 2]),
    (CLS, "vit"): _VIT,
    (CLS, "vit_hybrid"): _vit_hybrid,
    (CLS, "vit_msn"): _VIT,
}


#: Architectures kept at :data:`SIDE` whatever side is asked (their position tables grow with the area).
OWN_SIDE = {"imagegpt", "perceiver"}
#: Sizes that scale with the side where the same config also sets ``image_size``: the token grid stays small.
_SCALED = ("patch_size", "patch_stride", "patch_padding", "resolution")


def _at_side(kwargs: dict, side: int) -> dict:
    factor = side // SIDE
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, dict):
            value = _at_side(value, side)
        elif key == "image_size":
            value = [side, side] if isinstance(value, list) else max(side, value)
        elif key in _SCALED and "image_size" in kwargs:
            value = [v * factor for v in value] if isinstance(value, list) else value * factor
        out[key] = value
    return out


def tiny_config(task: str, model_type: str, *, id2label: dict[int, str], side: int = SIDE,
                overrides: dict | None = None):
    """The tiny config of ``model_type`` with ``id2label`` for ``side`` x ``side`` inputs (a multiple of
    :data:`SIDE`), ``overrides`` replacing its keyword arguments; ``None`` when no tiny entry exists."""
    from transformers import AutoConfig

    kwargs = TINY.get((task, model_type))
    if kwargs is None:
        return None
    side = SIDE if model_type in OWN_SIDE else side
    kwargs = {**(kwargs(side) if callable(kwargs) else _at_side(kwargs, side)), **(overrides or {})}
    if "num_labels" in kwargs:  # configs that need it (PVT) get the count of the labels asked for
        kwargs["num_labels"] = len(id2label)
    return AutoConfig.for_model(model_type, **kwargs, id2label=id2label, label2id={v: k for k, v in id2label.items()},
                                architectures=[model_class_name(task, model_type)])


def model_class_name(task: str, model_type: str) -> str:
    """The first class of ``model_type`` in the task's auto mapping (the one ``from_pretrained`` picks)."""
    from transformers.models.auto import modeling_auto

    mapping = (modeling_auto.MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES if task == SEG
               else modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES)
    names = mapping[model_type]
    return names[0] if isinstance(names, (tuple, list)) else names


def input_side(task: str, model_type: str, side: int = SIDE) -> int:
    """Square input side of the tiny model built for ``side`` (its processor's size)."""
    kwargs = TINY[task, model_type]
    if model_type in OWN_SIDE or not isinstance(kwargs, dict):
        return SIDE if model_type in OWN_SIDE else side
    size = kwargs.get("image_size", kwargs.get("vision_config", {}).get("image_size", side))
    return max(side, int(size[0] if isinstance(size, list) else size))


def build_tiny(task: str, model_type: str, *, id2label: dict[int, str], seed: int = 0, side: int = SIDE,
               overrides: dict | None = None):
    """The tiny ``model_type`` for ``task`` with random weights, in eval mode."""
    import torch
    import transformers

    config = tiny_config(task, model_type, id2label=id2label, side=side, overrides=overrides)
    cls = getattr(transformers, model_class_name(task, model_type))
    torch.manual_seed(seed)
    if model_type in _OWN_INIT:
        try:
            from transformers.initialization import no_init_weights  # transformers 5
        except ImportError:
            from transformers.modeling_utils import no_init_weights

        with no_init_weights():
            model = cls(config)
        for param in model.parameters():
            torch.nn.init.normal_(param, std=_OWN_INIT[model_type])
        return model.eval()
    model = cls(config).eval()
    if model_type in _REINIT:
        _REINIT[model_type](model)
    return model


def _pp_lcnet_init(model) -> None:
    """Kaiming convolutions, unit batch norms and a wide head: with its own initialisation the tiny
    PP-LCNet's logits are about 1e-20, too small for a parity check to mean anything."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
        elif isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
            torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=100.0)


#: model_type -> re-initialisation of a freshly built tiny model.
_REINIT = {"pp_lcnet": _pp_lcnet_init}


#: Architectures initialised here with N(0, std) weights: ViT-hybrid, whose own initialisation fails on a
#: fresh model (transformers 4.57); TIPSv2-DPT, whose own gives logits in the hundreds, where fp32
#: rounding alone exceeds the absolute parity limit.
_OWN_INIT = {"vit_hybrid": 0.2, "tipsv2_dpt": 0.1}


#: model_type -> ``preprocessor_config.json`` for image processors that exist only as torchvision
#: classes (transformers 5), which cannot be built without torchvision: their class defaults, sized
#: by :func:`save_tiny`.
PROCESSOR_DEFAULTS = {
    "sapiens2": {"image_processor_type": "Sapiens2ImageProcessor", "do_resize": True, "do_center_crop": False,
                 "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                 "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]},
    "tipsv2_dpt": {"image_processor_type": "Tipsv2DptImageProcessor", "do_resize": True, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": False},
    "pp_lcnet": {"image_processor_type": "PPLCNetImageProcessor", "do_resize": True, "do_center_crop": True,
                 "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                 "image_mean": [0.406, 0.456, 0.485], "image_std": [0.225, 0.224, 0.229]},
}


def processor_class(model_type: str):
    """The image processor class of ``model_type`` (the PIL one where transformers 5 has two), or
    ``None`` when it needs torchvision, which is not installed."""
    from transformers.models.auto.image_processing_auto import (
        IMAGE_PROCESSOR_MAPPING_NAMES,
        get_image_processor_class_from_name,
    )

    names = IMAGE_PROCESSOR_MAPPING_NAMES.get(model_type) or IMAGE_PROCESSOR_MAPPING_NAMES["vit"]
    if isinstance(names, dict):  # transformers 5: {"pil": ..., "torchvision": ...}
        names = names.get("pil") or names.get("torchvision")
    cls = get_image_processor_class_from_name(names[0] if isinstance(names, (tuple, list)) else names)
    try:
        cls()
    except ImportError:
        return None
    return cls


def save_tiny(folder: str | Path, task: str, model_type: str, *, id2label: dict[int, str], seed: int = 0,
              side: int = SIDE, overrides: dict | None = None) -> Path:
    """Build the tiny ``model_type`` for ``task`` (config keyword ``overrides`` applied) and save it with
    its image processor, sized to the model."""
    import json

    folder = Path(folder)
    model = build_tiny(task, model_type, id2label=id2label, seed=seed, side=side, overrides=overrides)
    model.save_pretrained(folder)
    vision = getattr(model.config, "vision_config", model.config)
    side = input_side(task, model_type, side)
    cls = processor_class(model_type)
    if cls is None:
        config = dict(PROCESSOR_DEFAULTS[model_type], size={"height": side, "width": side})
        if config.get("do_center_crop"):
            config["crop_size"] = {"height": side, "width": side}
        (folder / "preprocessor_config.json").write_text(json.dumps(config, indent=2))
        return folder
    processor = cls()
    for key in ("size", "crop_size"):
        value = getattr(processor, key, None)
        if value is None or isinstance(value, int):
            continue
        # a dict (transformers 4) or a SizeDict (5) with height and width or shortest_edge
        keys = {k for k in ("height", "width", "shortest_edge")
                if (value.get(k) if isinstance(value, dict) else getattr(value, k, None)) is not None}
        edge = "shortest_edge" in keys and "height" not in keys
        setattr(processor, key, {"shortest_edge": side} if edge else {"height": side, "width": side})
    if model_type == "siglip2":  # a square grid of num_patches patches
        processor.patch_size, processor.max_num_patches = vision.patch_size, vision.num_patches
    if model_type == "imagegpt":  # colour clusters in [-1, 1], one per token id but the start token
        clusters = np.random.default_rng(seed).uniform(-1, 1, (model.config.vocab_size - 1, 3))
        processor.clusters = clusters.astype(np.float32)
    processor.save_pretrained(folder)
    return folder
