"""Video: a stream session (tracking and One-Euro smoothing over the pipeline) and container
decoding with PyAV."""
