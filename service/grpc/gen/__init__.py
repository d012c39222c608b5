"""Generated gRPC stubs (tools/gen_protos.py, ``make proto``): do not edit."""
