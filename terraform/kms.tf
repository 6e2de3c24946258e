# Cloud KMS: one key ring, two symmetric keys.
#
# - integration-credentials: the service encrypts every provider credential
#   with it (KMS_KEY_NAME). Automatic rotation adds a new primary version every
#   rotation period; older versions stay enabled, so ciphertext written under
#   them still decrypts (the service records the version of each blob).
# - bigquery-tables: customer-managed default encryption of the dataset. Kept
#   apart so the runtime identity holds no role on it (BigQuery's own service
#   agent uses it) and its rotation or revocation never touches credentials.
#
# The key ring lives in the dataset's location because BigQuery CMEK needs the
# key in the same location as the dataset ("US" -> "us").

locals {
  kms_location = lower(var.bigquery_location)
}

resource "google_kms_key_ring" "integrations" {
  name     = var.kms_key_ring_name
  location = local.kms_location

  depends_on = [google_project_service.enabled]
}

resource "google_kms_crypto_key" "credentials" {
  name            = "integration-credentials"
  key_ring        = google_kms_key_ring.integrations.id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = var.kms_rotation_period

  version_template {
    algorithm        = "GOOGLE_SYMMETRIC_ENCRYPTION"
    protection_level = var.kms_protection_level
  }

  # Destroying the key destroys every stored credential with it.
  lifecycle {
    prevent_destroy = true
  }
}

resource "google_kms_crypto_key" "bigquery" {
  name            = "bigquery-tables"
  key_ring        = google_kms_key_ring.integrations.id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = var.kms_rotation_period

  version_template {
    algorithm        = "GOOGLE_SYMMETRIC_ENCRYPTION"
    protection_level = var.kms_protection_level
  }

  # Destroying the key makes the whole dataset unreadable.
  lifecycle {
    prevent_destroy = true
  }
}
