"""Inbound: how requests reach the use cases. HTTP plumbing every Cloud Function shares (routing,
auth, JSON bodies, errors as JSON, the request id: ``http``; ``cors``)."""
