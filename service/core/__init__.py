"""Pre/post-processing conventions shared by the Triton models, the tests and the benchmarks.

Only numpy and OpenCV here: this package is imported inside Triton's Python backend.
"""
