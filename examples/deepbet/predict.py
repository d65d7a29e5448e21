"""Run an exported model on every scan in a folder and write its label maps.

    python examples/deepbet/predict.py MODEL.onnx IMAGE_DIR PRED_DIR

Predictions keep each scan's file name and geometry, so ``medbench evaluate --pred PRED_DIR``
pairs them with references of the same name. Timings per scan are printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from medbench_fast.data.reader import (
    case_id_from_path,
    is_image_path,
    load_volume,
    write_volume,
)
from medbench_fast.models import load_model


def main(model_path: str, image_dir: str, pred_dir: str) -> None:
    model = load_model(model_path)
    out = Path(pred_dir)
    out.mkdir(parents=True, exist_ok=True)
    for image in sorted(p for p in Path(image_dir).iterdir() if is_image_path(p)):
        prediction = model.predict(load_volume(image))
        write_volume(prediction.label_map, out / f"{case_id_from_path(image)}.nii.gz")
        timings = ", ".join(f"{k} {v:.2f}" for k, v in prediction.timings.items())
        print(f"{image.name}: {timings} ({model.providers_in_use[0]})")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
