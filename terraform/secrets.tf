# Secret Manager: the service's own secrets (shared/common/config.py reads them by id).
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

# OAuth clients: one client id and one client secret per OAuth provider of the
# registry (credential_type: oauth), read by shared/oauth as
# oauth-<provider>-client-id / oauth-<provider>-client-secret. Terraform makes
# the empty secrets and the runtime's access; the values come from each
# provider's developer console and never pass through Terraform or its state:
#   printf %s "$SECRET" | gcloud secrets versions add oauth-canva-client-secret --data-file=-
locals {
  provider_registry = yamldecode(file("${path.module}/../configs/system/providers.yml"))
  oauth_providers   = sort([for id, provider in local.provider_registry.providers : id if provider.credential_type == "oauth"])
  oauth_client_secret_ids = flatten([
    for id in local.oauth_providers : ["oauth-${id}-client-id", "oauth-${id}-client-secret"]
  ])
}

resource "google_secret_manager_secret" "oauth_client" {
  for_each  = toset(local.oauth_client_secret_ids)
  secret_id = each.key

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_iam_member" "runtime_oauth_client_accessor" {
  for_each  = toset(local.oauth_client_secret_ids)
  project   = var.project_id
  secret_id = google_secret_manager_secret.oauth_client[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime.email}"
}
