"""``DETR`` and ``DeformableDETR`` meta-architectures on detectron2 backbones.

Both take detectron2's batched inputs (``[{"image", "instances", "height", "width"}]``),
return the set criterion's losses in training and ``[{"instances": Instances}]`` in
inference, and build their backbone with ``build_backbone`` (detectron2's ResNet, or
det_forget's ViT pyramid). Heads and transformer keep the official parameter names; the
backbone is detectron2's (see :mod:`.official_checkpoint` for the mapping).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn
from torchvision.ops import box_convert

from ...errors import ConfigValueError
from .criterion import SetCriterion
from .deformable_transformer import DeformableTransformer
from .matcher import HungarianMatcher
from .position_encoding import PositionEmbeddingSine
from .transformer import DetrTransformer

__all__ = ["DETR", "DeformableDETR", "MLP", "DETR_ARCHITECTURES", "FORGET_LOSS_MODES"]

#: ``FORGET.LOSS.DETR_FORGET`` values: ``"matched"`` (det_forget's matched-query loss) and
#: ``"reference"`` (GS-LoRA's released detector code); see ``forget_outputs.py``.
FORGET_LOSS_MODES = ("matched", "reference")

#: Meta-architecture names of the DETR family (read ``MODEL.DETR.*``).
DETR_ARCHITECTURES = ("DETR", "DeformableDETR")


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (the official box head)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < len(self.layers) - 1 else layer(x)
        return x


def _forget_loss_mode(cfg) -> str:
    """``FORGET.LOSS.DETR_FORGET``, checked against the method and the bounding.

    The ``reference`` mode is GS-LoRA's bounded loss on the batch mean, so it needs a
    method with the bounded forget term and ``FORGET.LOSS.PER_CLASS`` and ``PER_OBJECT`` False.
    """
    if "FORGET" not in cfg:
        return "matched"
    mode = cfg.FORGET.LOSS.DETR_FORGET
    if mode == "reference":
        from ...forgetting.methods import get_method

        method = get_method(cfg.FORGET.METHOD)
        if "loss_forget_bounded" not in method.terms:
            raise ConfigValueError(
                f"FORGET.LOSS.DETR_FORGET 'reference' is GS-LoRA's bounded forget loss; "
                f"FORGET.METHOD {method.name!r} has no bounded forget term (use 'matched')"
            )
        if cfg.FORGET.LOSS.PER_CLASS:
            raise ConfigValueError(
                "FORGET.LOSS.DETR_FORGET 'reference' bounds the batch's classification loss "
                "as GS-LoRA's code does; set FORGET.LOSS.PER_CLASS False"
            )
        if cfg.FORGET.LOSS.PER_OBJECT:
            raise ConfigValueError(
                "FORGET.LOSS.DETR_FORGET 'reference' bounds the batch's classification loss "
                "(one value, no objects); set FORGET.LOSS.PER_OBJECT False"
            )
    return mode


def _criterion_from_config(cfg, focal: bool) -> SetCriterion:
    d = cfg.MODEL.DETR
    matcher = HungarianMatcher(
        cost_class=d.COST_CLASS,
        cost_bbox=d.COST_BBOX,
        cost_giou=d.COST_GIOU,
        focal=focal,
        focal_alpha=d.FOCAL_ALPHA,
    )
    weights = {"loss_ce": d.CLASS_WEIGHT, "loss_bbox": d.L1_WEIGHT, "loss_giou": d.GIOU_WEIGHT}
    return SetCriterion(
        d.NUM_CLASSES,
        matcher,
        weights,
        eos_coef=d.NO_OBJECT_WEIGHT,
        focal=focal,
        focal_alpha=d.FOCAL_ALPHA,
    )


def _transformer_kwargs(d) -> dict:
    """The transformer arguments both families read from ``MODEL.DETR``."""
    return {
        "d_model": d.HIDDEN_DIM,
        "nhead": d.NHEADS,
        "num_encoder_layers": d.ENC_LAYERS,
        "num_decoder_layers": d.DEC_LAYERS,
        "dim_feedforward": d.DIM_FEEDFORWARD,
        "dropout": d.DROPOUT,
    }


class _SetPredictionDetector(nn.Module):
    """What DETR and Deformable DETR share: input handling, targets, losses, outputs."""

    #: Whether classification is sigmoid per class (no "no-object" logit).
    sigmoid: bool = False

    def __init__(
        self,
        *,
        backbone: Backbone,
        criterion: SetCriterion,
        num_classes: int,
        num_queries: int,
        pixel_mean: tuple[float, ...],
        pixel_std: tuple[float, ...],
        aux_loss: bool = True,
        freeze_backbone: bool = False,
        detections_per_image: int = 100,
        forget_loss_mode: str = "matched",
    ) -> None:
        super().__init__()
        if forget_loss_mode not in FORGET_LOSS_MODES:
            raise ConfigValueError(
                f"FORGET.LOSS.DETR_FORGET must be one of {list(FORGET_LOSS_MODES)}, "
                f"got {forget_loss_mode!r}"
            )
        #: How forget images are scored when forgetting (``FORGET.LOSS.DETR_FORGET``; see
        #: :mod:`det_forget.modeling.detr.forget_outputs`).
        self.forget_loss_mode = forget_loss_mode
        self.backbone = backbone
        self.criterion = criterion
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.aux_loss = aux_loss
        self.detections_per_image = detections_per_image
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        if freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    @classmethod
    def _shared_config(cls, cfg) -> dict:
        d = cfg.MODEL.DETR
        return {
            "backbone": build_backbone(cfg),
            "criterion": _criterion_from_config(cfg, focal=cls.sigmoid),
            "num_classes": d.NUM_CLASSES,
            "num_queries": d.NUM_OBJECT_QUERIES,
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "aux_loss": d.DEEP_SUPERVISION,
            "freeze_backbone": d.FREEZE_BACKBONE,
            "detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "forget_loss_mode": _forget_loss_mode(cfg),
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def classifier_prototypes(self) -> torch.Tensor:
        """Rows of the (last) class head: GS-LoRA++'s prototypes of the DETR family."""
        return self._last_class_embed().weight.detach().clone()

    def preprocess_image(self, batched_inputs) -> tuple[ImageList, torch.Tensor]:
        """Normalised, padded images and their padding mask (True on padding)."""
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        div = getattr(self.backbone, "size_divisibility", 0) or 32
        images = ImageList.from_tensors(images, div)
        n, _, h, w = images.tensor.shape
        mask = torch.ones((n, h, w), dtype=torch.bool, device=self.device)
        for i, (ih, iw) in enumerate(images.image_sizes):
            mask[i, :ih, :iw] = False
        return images, mask

    def prepare_targets(self, batched_inputs) -> list[dict[str, torch.Tensor]]:
        """Ground truth as normalised ``(cx, cy, w, h)`` boxes of the unpadded image."""
        targets = []
        for x in batched_inputs:
            inst = x["instances"].to(self.device)
            h, w = inst.image_size
            scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=self.device)
            boxes = box_convert(inst.gt_boxes.tensor / scale, "xyxy", "cxcywh")
            targets.append({"labels": inst.gt_classes, "boxes": boxes})
        return targets

    def _backbone_features(self, images: ImageList) -> dict[str, torch.Tensor]:
        train_backbone = any(p.requires_grad for p in self.backbone.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and train_backbone):
            return self.backbone(images.tensor)

    def forward_outputs(self, batched_inputs) -> tuple[dict, list[tuple[int, int]]]:
        """Raw predictions: ``pred_logits`` / ``pred_boxes`` of the last decoder layer,
        ``aux_outputs`` of the others, ``hs`` (every layer's query embeddings)."""
        raise NotImplementedError

    def _outputs(self, hs: torch.Tensor, logits: torch.Tensor, boxes: torch.Tensor) -> dict:
        return {
            "pred_logits": logits[-1],
            "pred_boxes": boxes[-1],
            "aux_outputs": [
                {"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])
            ]
            if self.aux_loss
            else [],
            "hs": hs,
        }

    def forward(self, batched_inputs):
        outputs, image_sizes = self.forward_outputs(batched_inputs)
        if self.training:
            if any("instances" not in x for x in batched_inputs):
                raise ValueError("training inputs need 'instances' (ground-truth boxes)")
            return self.criterion(outputs, self.prepare_targets(batched_inputs))
        results = self.inference(outputs["pred_logits"], outputs["pred_boxes"], image_sizes)
        processed = []
        for res, x, size in zip(results, batched_inputs, image_sizes):
            h = x.get("height", size[0])
            w = x.get("width", size[1])
            processed.append({"instances": detector_postprocess(res, h, w)})
        return processed

    def inference(self, logits, boxes, image_sizes) -> list[Instances]:
        """Scores, classes and absolute ``XYXY`` boxes per image."""
        results = []
        for lg, bx, (h, w) in zip(logits, boxes, image_sizes):
            # The best (query, class) pairs, not one class per query: a query whose
            # forgotten class still leads the foreground classes at a tiny probability
            # must not keep producing that class's detections.
            prob = lg.sigmoid() if self.sigmoid else lg.softmax(-1)[:, :-1]
            prob = prob.flatten()
            k = min(self.detections_per_image, prob.numel())
            scores, idx = prob.topk(k)
            labels = idx % self.num_classes
            bx = bx[torch.div(idx, self.num_classes, rounding_mode="floor")]
            xyxy = box_convert(bx, "cxcywh", "xyxy") * torch.tensor(
                [w, h, w, h], dtype=bx.dtype, device=bx.device
            )
            res = Instances((h, w))
            res.pred_boxes = Boxes(xyxy)
            res.pred_boxes.clip((h, w))
            res.scores = scores
            res.pred_classes = labels
            results.append(res)
        return results


@META_ARCH_REGISTRY.register()
class DETR(_SetPredictionDetector):
    """DETR (Carion et al. 2020): one feature level, softmax classes + no-object.

    Args (besides the shared ones):
        transformer: :class:`DetrTransformer`.
        in_feature: the backbone output used (``res5`` for ResNet).
    """

    @configurable
    def __init__(self, *, transformer: DetrTransformer, in_feature: str, **kwargs) -> None:
        super().__init__(**kwargs)
        d = transformer.d_model
        self.in_feature = in_feature
        shape = self.backbone.output_shape()
        if in_feature not in shape:
            raise ValueError(f"backbone has no output {in_feature!r}; it has {sorted(shape)}")
        self.transformer = transformer
        self.input_proj = nn.Conv2d(shape[in_feature].channels, d, kernel_size=1)
        self.query_embed = nn.Embedding(self.num_queries, d)
        self.class_embed = nn.Linear(d, self.num_classes + 1)
        self.bbox_embed = MLP(d, d, 4, 3)
        self.position_embedding = PositionEmbeddingSine(d // 2, normalize=True)

    @classmethod
    def from_config(cls, cfg):
        d = cfg.MODEL.DETR
        if len(d.IN_FEATURES) != 1:
            raise ValueError(f"DETR uses one feature level; MODEL.DETR.IN_FEATURES={d.IN_FEATURES}")
        return {
            **cls._shared_config(cfg),
            "in_feature": d.IN_FEATURES[0],
            "transformer": DetrTransformer(**_transformer_kwargs(d)),
        }

    def _last_class_embed(self) -> nn.Linear:
        return self.class_embed

    def forward_outputs(self, batched_inputs):
        images, mask = self.preprocess_image(batched_inputs)
        feat = self._backbone_features(images)[self.in_feature]
        mask = F.interpolate(mask[None].float(), size=feat.shape[-2:])[0].bool()
        pos = self.position_embedding(mask).to(feat.dtype)
        hs = self.transformer(self.input_proj(feat), mask, self.query_embed.weight, pos)
        return self._outputs(hs, self.class_embed(hs), self.bbox_embed(hs).sigmoid()), list(
            images.image_sizes
        )


@META_ARCH_REGISTRY.register()
class DeformableDETR(_SetPredictionDetector):
    """Deformable DETR (Zhu et al. 2021), single stage without box refinement:
    multi-scale deformable attention, sigmoid focal classification, 2D reference points.

    Args (besides the shared ones):
        transformer: :class:`DeformableTransformer`.
        in_features: backbone outputs, finest first; the transformer's extra levels are
            made by stride-2 3x3 convs on the last one.
    """

    sigmoid = True

    @configurable
    def __init__(
        self, *, transformer: DeformableTransformer, in_features: list[str], **kwargs
    ) -> None:
        super().__init__(**kwargs)
        d = transformer.d_model
        levels = transformer.level_embed.shape[0]
        shape = self.backbone.output_shape()
        missing = [f for f in in_features if f not in shape]
        if missing:
            raise ValueError(f"backbone has no outputs {missing}; it has {sorted(shape)}")
        if levels < len(in_features):
            raise ValueError(
                f"{len(in_features)} backbone features for {levels} transformer levels"
            )
        self.in_features = list(in_features)
        self.transformer = transformer
        groups = 32 if d % 32 == 0 else 1
        proj = [
            nn.Sequential(nn.Conv2d(shape[f].channels, d, 1), nn.GroupNorm(groups, d))
            for f in in_features
        ]
        channels = shape[in_features[-1]].channels
        for _ in range(levels - len(in_features)):
            proj.append(
                nn.Sequential(
                    nn.Conv2d(channels, d, 3, stride=2, padding=1), nn.GroupNorm(groups, d)
                )
            )
            channels = d
        self.input_proj = nn.ModuleList(proj)
        for p in self.input_proj:
            nn.init.xavier_uniform_(p[0].weight, gain=1)
            nn.init.constant_(p[0].bias, 0)
        self.query_embed = nn.Embedding(self.num_queries, 2 * d)
        class_embed = nn.Linear(d, self.num_classes)
        nn.init.constant_(class_embed.bias, -math.log((1 - 0.01) / 0.01))
        bbox_embed = MLP(d, d, 4, 3)
        nn.init.constant_(bbox_embed.layers[-1].weight, 0)
        nn.init.constant_(bbox_embed.layers[-1].bias, 0)
        with torch.no_grad():
            bbox_embed.layers[-1].bias[2:] = -2.0
        # One head shared by every decoder layer, listed once per layer (official layout).
        num_pred = len(transformer.decoder.layers)
        self.class_embed = nn.ModuleList([class_embed] * num_pred)
        self.bbox_embed = nn.ModuleList([bbox_embed] * num_pred)
        self.position_embedding = PositionEmbeddingSine(d // 2, normalize=True, offset=-0.5)

    @classmethod
    def from_config(cls, cfg):
        d = cfg.MODEL.DETR
        return {
            **cls._shared_config(cfg),
            "in_features": list(d.IN_FEATURES),
            "transformer": DeformableTransformer(
                **_transformer_kwargs(d),
                num_feature_levels=d.NUM_FEATURE_LEVELS,
                dec_n_points=d.DEC_N_POINTS,
                enc_n_points=d.ENC_N_POINTS,
            ),
        }

    def _last_class_embed(self) -> nn.Linear:
        return self.class_embed[-1]

    def forward_outputs(self, batched_inputs):
        images, mask = self.preprocess_image(batched_inputs)
        feats = self._backbone_features(images)
        srcs, masks = [], []
        last = None
        for lvl, proj in enumerate(self.input_proj):
            if lvl < len(self.in_features):
                x = feats[self.in_features[lvl]]
                last = x
                src = proj(x)
            else:
                src = proj(last)
                last = src
            srcs.append(src)
            masks.append(F.interpolate(mask[None].float(), size=src.shape[-2:])[0].bool())
        pos = [self.position_embedding(m).to(s.dtype) for m, s in zip(masks, srcs)]
        hs, reference = self.transformer(srcs, masks, pos, self.query_embed.weight)
        ref_logit = torch.logit(reference.clamp(1e-5, 1 - 1e-5))
        logits, boxes = [], []
        for lvl in range(hs.shape[0]):
            logits.append(self.class_embed[lvl](hs[lvl]))
            delta = self.bbox_embed[lvl](hs[lvl])
            boxes.append(torch.cat([delta[..., :2] + ref_logit, delta[..., 2:]], -1).sigmoid())
        return self._outputs(hs, torch.stack(logits), torch.stack(boxes)), list(images.image_sizes)
