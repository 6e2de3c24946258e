# BigQuery: the dataset and one table per schema file in configs/schemas.
#
# The JSON files are the one source of truth for columns: the service's
# bootstrap, its SQLite DDL and these tables all read them. Because Terraform
# creates the tables, `python -m shared.cli bootstrap` is not needed in GCP.
# tests/test_terraform.py checks this list against shared.domain.schemas.TABLES.

locals {
  bigquery_tables = [
    "org_integrations",
    "org_credentials",
    "integration_audit_log",
    "org_api_keys",
    "integration_alerts",
    "org_webhooks",
    "org_external_ids",
    "oauth_states",
    "saas_subscription_providers_meta",
  ]
}

# BigQuery's service agent encrypts and decrypts the dataset's data with the
# CMEK key; it needs the role before the dataset can name the key.
data "google_bigquery_default_service_account" "bigquery" {
  depends_on = [google_project_service.enabled]
}

resource "google_bigquery_dataset" "organizations" {
  dataset_id                 = var.bigquery_dataset_id
  location                   = var.bigquery_location
  description                = "Provider integrations: integration records, encrypted credentials, audit log, org API key hashes."
  delete_contents_on_destroy = false

  default_encryption_configuration {
    kms_key_name = google_kms_crypto_key.bigquery.id
  }

  depends_on = [google_kms_crypto_key_iam_member.bigquery_cmek]
}

resource "google_bigquery_table" "tables" {
  for_each = toset(local.bigquery_tables)

  dataset_id          = google_bigquery_dataset.organizations.dataset_id
  table_id            = each.key
  schema              = file("${path.module}/../configs/schemas/${each.key}.json")
  deletion_protection = true

  encryption_configuration {
    kms_key_name = google_kms_crypto_key.bigquery.id
  }
}
