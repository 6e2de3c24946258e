"""Inbound: how requests reach the use cases. The HTTP plumbing every Cloud Function shares (routing,
auth, JSON bodies, errors as JSON, the request id: ``http``; ``cors``) and the pipelines' in-process
entry (``pipelines.access_credential``)."""
