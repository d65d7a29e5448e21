"""nnU-Net v2 trained-model folders as a model kind (``kind: nnunet``).

- :mod:`.folder`: reads and checks the folder (configuration, folds, checkpoints).
- :mod:`.export`: the networks of the chosen folds, mirroring inside, as one ONNX file with
  a fixed patch-sized input, cached by the checkpoints' hash (``medbench export --nnunet``).
- :mod:`.model`: the runtime adapter, nnunetv2's preprocessing and export around an ONNX
  Runtime sliding window that accumulates as nnU-Net 2.5.2 does.
- :mod:`.synthetic`: small trained-model folders built with nnunetv2 itself (tests, benchmarks).

Needs nnunetv2 (and torch) at export and run time; imported only when used.
"""
