"""Talking to Triton: the embedded tritonserver process and the inference client."""
