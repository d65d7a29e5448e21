"""A whole-volume classifier's scores join the targets CSV rows that name no object."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pyarrow.parquet as pq
from click.testing import CliRunner

from medbench_fast.cli.main import cli
from medbench_fast.data.reader import load_volume


def _mean_hu_classifier(path):
    """An ONNX image classifier: logits (0, (mean HU of the slice + 300) / 100), softmax in the spec."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from medbench_fast.models.spec import (
        ModelSpec,
        OutputSpec,
        StrategySpec,
        spec_path_for,
    )

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)

    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["mean"], axis=1),
        helper.make_node("MatMul", ["mean", "w"], ["scaled"]),
        helper.make_node("Add", ["scaled", "b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "mean-hu",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[const("w", [[0.0, 0.01]]), const("b", [0.0, 3.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    ModelSpec(name="mean-hu", inputs=["image"], strategy=StrategySpec(type="slice2d", axis=0, batch_size=64),
              output=OutputSpec(kind="case_scores", activation="softmax", score_names=["benign", "malignant"])
              ).to_json(spec_path_for(path))


def test_whole_case_scores_join_targets_without_object_id(tmp_path, bench_assets):
    _mean_hu_classifier(tmp_path / "classifier.onnx")
    images = sorted((bench_assets / "data" / "images").iterdir())[:6]
    means = {p.name.split(".")[0]: float(np.mean(load_volume(p).array)) for p in images}
    cut = float(np.median(list(means.values())))
    lines = ["case_id,malignant"] + [f"{c},{int(m > cut)}" for c, m in sorted(means.items())]
    (tmp_path / "targets.csv").write_text("\n".join(lines) + "\n")  # no object_id column
    config = tmp_path / "benchmark_config.yaml"
    config.write_text(textwrap.dedent(f"""\
        dataset:
          image_dir: {bench_assets}/data/images
          seg_dir: {bench_assets}/data/labels
          targets_csv: {tmp_path}/targets.csv
          max_cases: 6
        models:
          - name: mean-hu
            path: {tmp_path}/classifier.onnx
        output:
          formats: [json]
        """))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "--config", str(config), "--out", str(out), "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    scores = pq.read_table(out / "scores.parquet").to_pylist()
    malignant = [r for r in scores if r["target_name"] == "malignant"]
    assert len(malignant) == 6 and {r["object_id"] for r in malignant} == {0}
    assert all(r["target"] is not None for r in malignant)
    auc = json.loads((out / "summary.json").read_text())["classification"]["mean-hu"]["malignant"]["auc"]
    assert auc == 1.0  # the score grows with the mean HU that defines the target
