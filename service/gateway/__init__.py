"""The HTTP gateway: decode the upload, call the Triton pipeline, format the JSON."""
