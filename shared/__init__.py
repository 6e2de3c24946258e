"""The common package shared by every Cloud Function of the integrations service."""
