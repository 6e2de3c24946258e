# Identities and least privilege.
#
# Four service accounts, each with only what its job needs:
#   runtime   - what the functions run as: the one KMS key (encrypt/decrypt,
#               and rotate it: a custom role with four permissions), the one
#               dataset, BigQuery jobs, the one secret.
#   gateway   - what API Gateway calls the functions as: run.invoker on each
#               gateway-routed function, nothing else.
#   scheduler - what Cloud Scheduler calls revalidation and re-encryption
#               as: run.invoker on those two functions, nothing else.
# The cost pipelines' own service account (var.pipelines_service_account,
# not made here) gets run.invoker on credential_access alone.
#   build     - what Cloud Build builds the functions as: logs, the one image
#               repository, the function source objects.
# No basic role (owner/editor/viewer) is granted anywhere;
# tests/test_terraform.py enforces the list of project-level roles.

resource "google_service_account" "runtime" {
  account_id   = "integrations-runtime"
  display_name = "Provider integrations functions (runtime)"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "gateway" {
  account_id   = "integrations-gateway"
  display_name = "Provider integrations API Gateway (invokes the functions)"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "scheduler" {
  account_id   = "integrations-scheduler"
  display_name = "Provider integrations Cloud Scheduler (invokes revalidation)"
  depends_on   = [google_project_service.enabled]
}

resource "google_service_account" "build" {
  account_id   = "integrations-build"
  display_name = "Provider integrations Cloud Build (builds the functions)"
  depends_on   = [google_project_service.enabled]
}

# --- runtime ---------------------------------------------------------------

resource "google_kms_crypto_key_iam_member" "runtime_credentials" {
  crypto_key_id = google_kms_crypto_key.credentials.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${google_service_account.runtime.email}"
}

# Key rotation (POST /api/v1/admin/keys/rotate) and the key report need four
# permissions on the credentials key, and only on it. roles/cloudkms.admin
# would also allow destroying versions and changing IAM, so a custom role
# holds exactly: create a version, make it primary (cryptoKeys.update, the
# permission updatePrimaryVersion checks), read the key, list its versions.
resource "google_project_iam_custom_role" "key_rotator" {
  role_id     = "integrationsKeyRotator"
  title       = "Provider integrations key rotator"
  description = "Create a new version of the credentials key, make it primary, read the key and list its versions."
  permissions = [
    "cloudkms.cryptoKeyVersions.create",
    "cloudkms.cryptoKeys.update",
    "cloudkms.cryptoKeys.get",
    "cloudkms.cryptoKeyVersions.list",
  ]
}

resource "google_kms_crypto_key_iam_member" "runtime_key_rotator" {
  crypto_key_id = google_kms_crypto_key.credentials.id
  role          = google_project_iam_custom_role.key_rotator.id
  member        = "serviceAccount:${google_service_account.runtime.email}"
}

resource "google_bigquery_dataset_iam_member" "runtime_data_editor" {
  dataset_id = google_bigquery_dataset.organizations.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.runtime.email}"
}

# Running a query needs a job in the project; the data stays dataset-scoped.
resource "google_project_iam_member" "runtime_job_user" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

resource "google_secret_manager_secret_iam_member" "runtime_pepper_accessor" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.api_key_pepper.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime.email}"
}

# --- BigQuery service agent (dataset CMEK) ----------------------------------

resource "google_kms_crypto_key_iam_member" "bigquery_cmek" {
  crypto_key_id = google_kms_crypto_key.bigquery.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_bigquery_default_service_account.bigquery.email}"
}

# --- invokers ----------------------------------------------------------------

# A 2nd gen function is invoked through its Cloud Run service, which has the
# function's name.
resource "google_cloud_run_v2_service_iam_member" "gateway_invoker" {
  for_each = toset(local.gateway_entry_points)

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.functions[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.gateway.email}"
}

resource "google_cloud_run_v2_service_iam_member" "scheduler_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.functions[local.revalidate_entry_point].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_cloud_run_v2_service_iam_member" "scheduler_rewrap_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.functions[local.rewrap_entry_point].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# The cost pipelines read credentials through credential_access, and only
# there: their service account (var.pipelines_service_account) invokes that
# one function. The function checks the token's email as well.
resource "google_cloud_run_v2_service_iam_member" "pipelines_invoker" {
  count = var.pipelines_service_account == "" ? 0 : 1

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.functions[local.credential_access_entry_point].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.pipelines_service_account}"
}

# Operators named in var.key_operator_members may read the key report, rotate
# and re-encrypt over HTTP (from inside the project's network: the functions
# take internal traffic only). None by default.
resource "google_cloud_run_v2_service_iam_member" "key_operator_invoker" {
  for_each = { for pair in setproduct(local.key_operator_entry_points, var.key_operator_members) : "${pair[0]}/${pair[1]}" => pair }

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.functions[each.value[0]].name
  role     = "roles/run.invoker"
  member   = each.value[1]
}

# --- build -------------------------------------------------------------------

resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.build.email}"
}

resource "google_artifact_registry_repository_iam_member" "build_image_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.build.email}"
}

# The build reads the function source from the bucket Cloud Functions copies
# it to (gcf-v2-sources-PROJECT_NUMBER-REGION, created on first deploy, so it
# cannot be named here) and from ours; the condition limits the role to those.
resource "google_project_iam_member" "build_source_reader" {
  project = var.project_id
  role    = "roles/storage.objectAdmin"
  member  = "serviceAccount:${google_service_account.build.email}"

  condition {
    title       = "function-source-buckets"
    description = "Only the Cloud Functions source buckets and this stack's source bucket."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-\") || resource.name == \"projects/_/buckets/${google_storage_bucket.function_source.name}\" || resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.function_source.name}/\")"
  }
}
