"""The matrix-product ROIAlign gives torchvision's numbers and gradients, and the
forgetting detector uses it without changing what the detector outputs."""

import pytest
import torch
from detection_fixtures import TINY_VAL, tiny_cfg
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.layers import ROIAlign
from detectron2.modeling import build_model
from torchvision.ops import roi_align

from det_forget.modeling.roi_align import (
    MATMUL_MAX_AREA,
    MatmulROIAlign,
    matmul_roi_align,
    use_matmul_roi_align,
)


def _rois(n, images, size, seed=0, sort=True):
    g = torch.Generator().manual_seed(seed)
    batch = torch.randint(0, images, (n, 1), generator=g)
    if sort:
        batch = batch.sort(0)[0]
    # Boxes inside, across the border and wholly outside the image, tiny and large.
    xy = torch.rand(n, 2, generator=g) * size * 1.4 - size * 0.3
    wh = torch.rand(n, 2, generator=g) * size * 0.8
    return torch.cat([batch.double(), xy.double(), (xy + wh).double()], 1)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("sort", [True, False])
def test_matches_torchvision_values_and_gradients(aligned, sampling_ratio, sort):
    features = torch.randn(3, 5, 12, 10, dtype=torch.float64, requires_grad=True)
    rois = _rois(40, 3, 96, sort=sort)
    # Degenerate boxes: zero size, and a reversed one (x2 < x1).
    rois = torch.cat([rois, torch.tensor([[1, 20.0, 20.0, 20.0, 20.0], [2, 50.0, 5, 30.0, 9]])])
    rois = rois.to(torch.float64)
    args = ((7, 6), 1 / 8, sampling_ratio, aligned)
    expected = roi_align(features, rois, *args)
    got = matmul_roi_align(features, rois, *args)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    grad_out = torch.randn_like(expected)
    (g_expected,) = torch.autograd.grad(expected, features, grad_out)
    (g_got,) = torch.autograd.grad(got, features, grad_out)
    torch.testing.assert_close(g_got, g_expected, rtol=1e-10, atol=1e-10)


def test_empty_rois_and_bad_batch_index():
    features = torch.randn(2, 4, 8, 8)
    out = matmul_roi_align(features, torch.zeros(0, 5), (7, 7), 0.25, 0, True)
    assert out.shape == (0, 4, 7, 7)
    with pytest.raises(ValueError, match="batch indices"):
        matmul_roi_align(features, torch.tensor([[5.0, 0, 0, 8, 8]]), (7, 7), 0.25, 0, True)


def test_module_dispatch_and_same_output_on_either_path():
    pooler = MatmulROIAlign((7, 7), 0.25, 0, aligned=True)
    small = torch.randn(2, 3, 16, 16)
    side = int(MATMUL_MAX_AREA**0.5) + 1
    large = torch.randn(1, 3, side, side)
    assert pooler.uses_matmul(small) and not pooler.uses_matmul(large)
    rois = _rois(10, 1, 4 * side).float()
    reference = ROIAlign((7, 7), 0.25, 0, aligned=True)
    torch.testing.assert_close(pooler(large, rois), reference(large, rois))
    torch.testing.assert_close(pooler(small, rois), reference(small, rois), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        pooler(small, rois[:, :4])


def test_forgetting_detector_swaps_poolers_and_keeps_its_detections(tmp_path, tiny_shapes):
    # Random weights score low: keep every detection so there are some to compare.
    cfg = tiny_cfg(tmp_path, **{"MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0})
    model = build_model(cfg)
    poolers = model.detector.roi_heads.box_pooler.level_poolers
    assert poolers and all(type(p) is MatmulROIAlign for p in poolers)
    assert use_matmul_roi_align(model) == 0  # nothing left to swap
    state = model.state_dict()
    # The same weights with torchvision's ROIAlign give the same detections.
    plain = build_model(cfg)
    plain.detector.roi_heads.box_pooler.level_poolers = torch.nn.ModuleList(
        ROIAlign(p.output_size, p.spatial_scale, p.sampling_ratio, p.aligned) for p in poolers
    )
    plain.load_state_dict(state)
    model.eval()
    plain.eval()
    mapper = DatasetMapper(cfg, is_train=False)
    batch = [mapper(d) for d in DatasetCatalog.get(TINY_VAL)[:2]]
    with torch.no_grad():
        a = model(batch)
        b = plain(batch)
    for x, y in zip(a, b, strict=True):
        xi, yi = x["instances"], y["instances"]
        assert len(xi) == len(yi) > 0
        torch.testing.assert_close(xi.scores, yi.scores, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(xi.pred_boxes.tensor, yi.pred_boxes.tensor, rtol=1e-4, atol=1e-3)
        assert torch.equal(xi.pred_classes, yi.pred_classes)


def test_base_training_builds_the_detector_with_matmul_poolers(tmp_path, tiny_shapes):
    """tools/train_net.py trains base detectors (any META_ARCHITECTURE but the forgetting
    one) through DetectionTrainer.build_model, which swaps the poolers too."""
    from det_forget.engine import DetectionTrainer

    cfg = tiny_cfg(tmp_path)
    cfg.MODEL.META_ARCHITECTURE = cfg.FORGET.DETECTOR
    model = DetectionTrainer.build_model(cfg)
    assert type(model).__name__ == "GeneralizedRCNN"
    poolers = model.roi_heads.box_pooler.level_poolers
    assert poolers and all(type(p) is MatmulROIAlign for p in poolers)
