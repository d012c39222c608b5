"""The HTTP adapter: FastAPI routers over ``service.app`` (upload reading, JSON errors)."""
