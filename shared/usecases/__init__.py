"""The use cases, over the ports they are given (``ports.ServicePorts``): the integration
lifecycle (``integrations``), org API keys, alerts and webhooks, SaaS subscriptions, credential
access for the pipelines, and OAuth connections and refreshes."""
