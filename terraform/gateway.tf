# The one public base URL: API Gateway serving the spec's paths
# (/api/v1/integrations/...) and routing each to its function.
#
# The gateway config is openapi-gateway.yaml.tftpl rendered with every
# function's run.app URL. Each route uses path_translation
# APPEND_PATH_TO_ADDRESS, so a function receives the full spec path that its
# @endpoint rule matches, and an ID token minted for the gateway's service
# account with the function URL as audience (Cloud Run IAM checks it). The
# caller's X-API-Key header passes through untouched; the service checks it.
# tests/test_terraform.py checks the template against openapi.yaml and main.py.

locals {
  gateway_template_vars = {
    title = "provider-integrations"
    # allowCors lets CORS preflights through to the functions, which answer them
    # from CORS_ALLOWED_ORIGINS; it needs the API's managed service as host.
    managed_service = google_api_gateway_api.integrations.managed_service
    backends        = { for entry_point in local.gateway_entry_points : entry_point => google_cloudfunctions2_function.functions[entry_point].service_config[0].uri }
    deadlines       = { for entry_point in local.gateway_entry_points : entry_point => var.function_settings[entry_point].timeout_seconds }
  }
}

resource "google_api_gateway_api" "integrations" {
  provider     = google-beta
  api_id       = "provider-integrations"
  display_name = "Provider integrations"

  depends_on = [google_project_service.enabled]
}

resource "google_api_gateway_api_config" "integrations" {
  provider             = google-beta
  api                  = google_api_gateway_api.integrations.api_id
  api_config_id_prefix = "integrations-"
  display_name         = "Provider integrations"

  openapi_documents {
    document {
      path     = "openapi-gateway.yaml"
      contents = base64encode(templatefile("${path.module}/openapi-gateway.yaml.tftpl", local.gateway_template_vars))
    }
  }

  gateway_config {
    backend_config {
      google_service_account = google_service_account.gateway.email
    }
  }

  # Configs are immutable: a change creates a new one before the gateway
  # moves off the old.
  lifecycle {
    create_before_destroy = true
  }
}

resource "google_api_gateway_gateway" "integrations" {
  provider     = google-beta
  region       = var.gateway_region
  gateway_id   = "provider-integrations"
  api_config   = google_api_gateway_api_config.integrations.id
  display_name = "Provider integrations"

  depends_on = [google_project_service.gateway_managed_service]
}
