# Secret Manager: the service's own secrets (shared/config.py reads them by id).
#
# api-key-pepper is mixed into every org API key hash. Terraform generates its
# value, so a fresh project needs no manual step; the price is that the value
# sits in the Terraform state (random_password.result and the secret
# version's secret_data). Keep the state bucket as locked down as the secret:
# uniform access, no public access, readable only by the deploy identity.
#
# The pepper must never change: a new value invalidates every issued API key.
# prevent_destroy stops Terraform from replacing it.

resource "google_secret_manager_secret" "api_key_pepper" {
  secret_id = "api-key-pepper"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "random_password" "api_key_pepper" {
  length  = 48
  special = false

  lifecycle {
    prevent_destroy = true
  }
}

resource "google_secret_manager_secret_version" "api_key_pepper" {
  secret      = google_secret_manager_secret.api_key_pepper.id
  secret_data = random_password.api_key_pepper.result

  lifecycle {
    prevent_destroy = true
  }
}
