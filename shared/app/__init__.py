"""The composition root (``wiring``): builds the adapters and the service from ``Settings``."""
