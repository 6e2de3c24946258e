# Credential accesses, counted: every call of credential_access logs one
# "credential access" line (shared/usecases/credential_access.py) besides its audit
# row; this metric counts them by provider and outcome (success, rejected,
# failure), so a spike of refusals or a pipeline reading far more than usual
# shows on a chart or an alert policy without querying the audit table.
resource "google_logging_metric" "credential_accesses" {
  name        = "integrations/credential_accesses"
  description = "Credential accesses by the cost pipelines, by provider and outcome."
  filter      = "resource.type=\"cloud_run_revision\" AND jsonPayload.logger=\"integrations.credential_access\" AND jsonPayload.message=\"credential access\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    labels {
      key        = "provider"
      value_type = "STRING"
    }
    labels {
      key        = "outcome"
      value_type = "STRING"
    }
  }

  label_extractors = {
    provider = "EXTRACT(jsonPayload.provider)"
    outcome  = "EXTRACT(jsonPayload.outcome)"
  }

  depends_on = [google_project_service.enabled]
}
