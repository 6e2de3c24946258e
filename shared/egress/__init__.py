"""Outbound networking: every call the service makes out goes through here. The one HTTP client
(``http_client``), the guard for addresses a user named (``guard``), Google's REST APIs
(``google_rest``) and the signed delivery of alerts to webhooks (``webhooks``)."""
