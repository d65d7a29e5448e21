"""Surface metrics against the published tools: MONAI (voxel), DeepMind surface-distance (surfel), medpy (pooled).

MONAI casts distances to float32, so it is compared to 2e-5 relative; the others to 1e-6.
Spacings are drawn at random, so no distance lands on the NSD tolerance and the peers'
plain ``d <= tau`` counts the same elements as the slack of METRICS.md. The peers do not
handle empty masks (the DeepMind release crashes on them under numpy 2), so only
non-empty pairs are compared here; the empty cases are tested in ``test_surface.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reference import surface as ref_surface

from medbench_fast.metrics.surface import label_surface_metrics, surface_distances

torch = pytest.importorskip("torch")
monai_metrics = pytest.importorskip("monai.metrics")
medpy_binary = pytest.importorskip("medpy.metric.binary")
deepmind = pytest.importorskip("surface_distance")

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

PAIRS = [p for p in ref_surface.generated_pairs(seed=7, n=56) if (p[1] == p[3]).any() and (p[2] == p[3]).any()]
IDS = [p[0] for p in PAIRS]


def _tolerance(name):
    return 0.8 + int(name.split("-")[0]) % 5 * 0.45


def _ours(ref, pred, label, spacing, **kwargs):
    return label_surface_metrics(ref, pred, label, box=ref_surface.box_of(ref, pred, label), spacing=spacing,
                                 **kwargs)


def _onehot(mask):
    return torch.as_tensor(np.asarray(mask, np.float32)[None, None])


@pytest.mark.parametrize("name,ref,pred,label,spacing", PAIRS, ids=IDS)
def test_voxel_mode_matches_monai(name, ref, pred, label, spacing):
    r, p = _onehot(ref == label), _onehot(pred == label)
    tau = _tolerance(name)
    common = {"include_background": True, "spacing": list(spacing)}
    monai = {
        "hd": monai_metrics.compute_hausdorff_distance(p, r, **common).item(),
        "hd95": monai_metrics.compute_hausdorff_distance(p, r, percentile=95, **common).item(),
        "assd": monai_metrics.compute_average_surface_distance(p, r, symmetric=True, **common).item(),
        "nsd": monai_metrics.compute_surface_dice(p, r, [tau], **common).item(),
    }
    ours = _ours(ref, pred, label, spacing, tolerance_mm=tau)
    for key, value in monai.items():
        assert ours[key] == pytest.approx(value, rel=2e-5, abs=1e-6), key
    directed = monai_metrics.compute_average_surface_distance(p, r, symmetric=False, **common).item()
    sd = surface_distances(ref, pred, label, box=ref_surface.box_of(ref, pred, label), spacing=spacing)
    assert sd.pred_to_ref.mean() == pytest.approx(directed, rel=2e-5, abs=1e-6)


@pytest.mark.parametrize("name,ref,pred,label,spacing", PAIRS[::2], ids=IDS[::2])
def test_surfel_nsd_matches_monai_subvoxels(name, ref, pred, label, spacing):
    tau = _tolerance(name)
    r, p = _onehot(ref == label), _onehot(pred == label)
    monai = monai_metrics.compute_surface_dice(p, r, [tau], include_background=True, spacing=list(spacing),
                                               use_subvoxels=True).item()
    ours = _ours(ref, pred, label, spacing, tolerance_mm=tau, surface="surfel", metrics=("nsd",))
    assert ours["nsd"] == pytest.approx(monai, rel=2e-5, abs=1e-6)


@pytest.mark.parametrize("name,ref,pred,label,spacing", PAIRS, ids=IDS)
def test_surfel_mode_matches_deepmind(name, ref, pred, label, spacing):
    tau = _tolerance(name)
    dm = deepmind.compute_surface_distances(ref == label, pred == label, spacing)
    gt_to_pred, pred_to_gt = deepmind.compute_average_surface_distance(dm)
    expected = {
        "hd": deepmind.compute_robust_hausdorff(dm, 100),
        "hd95": deepmind.compute_robust_hausdorff(dm, 95),
        "masd": (gt_to_pred + pred_to_gt) / 2,
        "nsd": deepmind.compute_surface_dice_at_tolerance(dm, tau),
    }
    ours = _ours(ref, pred, label, spacing, tolerance_mm=tau, surface="surfel")
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key

    sd = surface_distances(ref, pred, label, box=ref_surface.box_of(ref, pred, label), spacing=spacing,
                           surface="surfel")
    for d, a, dm_d, dm_a in ((sd.ref_to_pred, sd.ref_areas, "distances_gt_to_pred", "surfel_areas_gt"),
                             (sd.pred_to_ref, sd.pred_areas, "distances_pred_to_gt", "surfel_areas_pred")):
        order = np.lexsort((a, d))
        np.testing.assert_allclose(d[order], dm[dm_d], rtol=1e-12)
        np.testing.assert_allclose(a[order], dm[dm_a], rtol=1e-12)
    total = sd.ref_areas.sum() + sd.pred_areas.sum()
    assd = (np.dot(dm["distances_gt_to_pred"], dm["surfel_areas_gt"])
            + np.dot(dm["distances_pred_to_gt"], dm["surfel_areas_pred"])) / total
    assert ours["assd"] == pytest.approx(assd, rel=1e-6)


@pytest.mark.parametrize("name,ref,pred,label,spacing", PAIRS, ids=IDS)
def test_pooled_mode_matches_medpy(name, ref, pred, label, spacing):
    r, p = ref == label, pred == label
    ours = _ours(ref, pred, label, spacing, hd95_mode="pooled")
    assert ours["hd95"] == pytest.approx(medpy_binary.hd95(p, r, voxelspacing=spacing), rel=1e-6)
    assert ours["hd"] == pytest.approx(medpy_binary.hd(p, r, voxelspacing=spacing), rel=1e-6)
    # medpy 0.5's assd pools both directions (assd here); the mean of its two asd is masd.
    assert ours["assd"] == pytest.approx(medpy_binary.assd(p, r, voxelspacing=spacing), rel=1e-6)
    masd = (medpy_binary.asd(p, r, voxelspacing=spacing) + medpy_binary.asd(r, p, voxelspacing=spacing)) / 2
    assert ours["masd"] == pytest.approx(masd, rel=1e-6)
