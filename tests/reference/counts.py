"""Slow, obvious references for confusion counts and counting metrics (METRICS.md)."""

from __future__ import annotations

import math

import numpy as np


def confusion(ref: np.ndarray, pred: np.ndarray, label: int) -> dict:
    r = np.asarray(ref) == label
    p = np.asarray(pred) == label
    return {"tp": int(np.sum(r & p)), "fp": int(np.sum(~r & p)), "fn": int(np.sum(r & ~p)), "tn": int(np.sum(~r & ~p))}


def box(arr: np.ndarray, label: int):
    idx = np.argwhere(np.asarray(arr) == label)
    if len(idx) == 0:
        return None
    return [int(v) for pair in zip(idx.min(0), idx.max(0) + 1) for v in pair]


def metrics(ref, pred, label, spacing) -> dict:
    c = confusion(ref, pred, label)
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]

    def div(a, b, default):
        return a / b if b else default

    vox_ml = math.prod(spacing) / 1000.0
    return {
        **c,
        "dice": div(2 * tp, 2 * tp + fp + fn, 1.0),
        "iou": div(tp, tp + fp + fn, 1.0),
        "sensitivity": div(tp, tp + fn, math.nan),
        "specificity": div(tn, tn + fp, math.nan),
        "precision": div(tp, tp + fp, math.nan),
        "volume_similarity": 1.0 - div(abs(fp - fn), 2 * tp + fp + fn, 0.0),
        "ref_volume_ml": (tp + fn) * vox_ml,
        "pred_volume_ml": (tp + fp) * vox_ml,
        "ref_empty": tp + fn == 0,
        "pred_empty": tp + fp == 0,
    }
