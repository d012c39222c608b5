"""The runtime Triton model repository: numbered versions, their metadata and configs."""
