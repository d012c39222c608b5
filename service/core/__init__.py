"""The conventions every part shares: specs, pre/post-processing, the ONNX I/O contract.

numpy and OpenCV only (onnxruntime where ONNX files are run): this package is what the Triton
Python-backend models import, as do the gateway, the client, training, tests and benchmarks.
"""
