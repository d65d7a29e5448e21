"""AI-ENE (DualNet-ENE): Keras-2 ``.h5`` reading and writing, conversion to ONNX, preprocessing.

Nothing here imports TensorFlow: the HDF5 file is read with ``h5py`` and the ONNX graph
is written with ``onnx.helper``.
"""
