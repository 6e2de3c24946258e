# Cloud Functions (2nd gen): one function per entry point of main.py, all
# built from one source archive.
#
# The archive is named by its content hash, so any change of code uploads a
# new object and redeploys every function; an unchanged tree changes nothing.

locals {
  # main.py's ENTRY_POINTS; tests/test_terraform.py keeps the two equal.
  entry_points = [
    "integration_setup",
    "integration_validate",
    "integration_list",
    "integration_get",
    "integration_update",
    "integration_delete",
    "integration_rotate",
    "integration_revalidate",
    "webhook_set",
    "webhook_get",
    "webhook_delete",
    "alerts_list",
    "aws_setup_instructions",
    "oauth_start",
    "oauth_callback",
    "oauth_complete",
    "subscription_providers_list",
    "subscription_provider_update",
    "integration_import",
    "admin_keys",
    "admin_key_rotate",
    "admin_key_rewrap",
    "credential_access",
  ]

  # Reached only by Cloud Scheduler (scheduler.tf), never through the gateway.
  revalidate_entry_point = "integration_revalidate"
  rewrap_entry_point     = "admin_key_rewrap"

  # The /api/v1/admin/... routes: internal traffic only, never on the gateway
  # (their callers are Cloud Scheduler and the key operators, iam.tf).
  admin_entry_points        = ["integration_revalidate", "admin_keys", "admin_key_rotate", "admin_key_rewrap"]
  key_operator_entry_points = ["admin_keys", "admin_key_rotate", "admin_key_rewrap"]

  # The pipelines' read side (POST .../access): never on the gateway; only the
  # pipelines' service account may invoke it (iam.tf).
  credential_access_entry_point = "credential_access"
  internal_entry_points         = concat(local.admin_entry_points, [local.credential_access_entry_point])

  # Served on the public base URL through API Gateway (gateway.tf).
  gateway_entry_points = [for entry_point in local.entry_points : entry_point if !contains(local.internal_entry_points, entry_point)]

  function_source_dir = var.function_source_dir != null ? var.function_source_dir : abspath("${path.module}/..")

  # Settings shared/common/config.py reads (see docs/configuration.md).
  function_environment = {
    INTEGRATIONS_BACKEND = "gcp"
    GCP_PROJECT          = var.project_id
    BIGQUERY_DATASET     = google_bigquery_dataset.organizations.dataset_id
    BIGQUERY_LOCATION    = google_bigquery_dataset.organizations.location
    KMS_KEY_NAME         = google_kms_crypto_key.credentials.id
    LOG_LEVEL            = var.log_level
    # The functions framework adds each invocation's execution id (and span id) to every JSON log
    # line (shared/common/logs.py writes them; GCP_PROJECT above names the trace of each line).
    LOG_EXECUTION_ID = "true"
    # Only Cloud Scheduler (and the key operators) may invoke the admin
    # routes (iam.tf, scheduler.tf), so they trust the OIDC token Cloud Run
    # verified instead of an admin API key. Read only by the admin routes.
    REVALIDATE_AUTH = "platform"
    # AWS: the platform's AWS role, assumed with this function's Google ID
    # token (no AWS key exists anywhere); empty = AWS integrations disabled.
    AWS_PLATFORM_ROLE_ARN     = var.aws_platform_role_arn
    AWS_WEB_IDENTITY_AUDIENCE = var.aws_web_identity_audience
    # OAuth: the callback URL registered with each provider, and where the
    # callback sends the browser afterwards (both empty until configured).
    OAUTH_REDIRECT_URI = var.oauth_redirect_uri
    OAUTH_FRONTEND_URL = var.oauth_frontend_url
    # The only service account whose OIDC token credential_access accepts (besides Cloud Run's invoker check).
    PIPELINES_SERVICE_ACCOUNT = var.pipelines_service_account
    # Browser origins allowed to call the API (CORS); empty = no CORS headers at all.
    CORS_ALLOWED_ORIGINS = join(",", var.cors_allowed_origins)
  }
}

data "archive_file" "function_source" {
  type        = "zip"
  source_dir  = local.function_source_dir
  output_path = "${path.module}/.build/function-source.zip"

  # Only what the functions import ships: no tests, infrastructure, local
  # state, virtual environments or VCS metadata. .gcloudignore mirrors this
  # list for a manual `gcloud functions deploy`.
  excludes = [
    ".git",
    ".git/**",
    ".ci",
    ".ci/**",
    ".data",
    ".data/**",
    ".venv",
    ".venv/**",
    ".venv*",
    ".venv*/**",
    ".mypy_cache/**",
    ".pytest_cache/**",
    ".ruff_cache/**",
    "**/__pycache__/**",
    "bench",
    "bench/**",
    "docs",
    "docs/**",
    "examples",
    "examples/**",
    "terraform",
    "terraform/**",
    "tests",
    "tests/**",
    # The TypeScript client and the settings console (and their node_modules): no
    # function imports them, and no web page is deployed.
    "clients",
    "clients/**",
  ]
}

resource "google_storage_bucket" "function_source" {
  name                        = "${var.project_id}-integrations-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  # Archives are named by content hash and never overwritten; a deleted one
  # is kept for a month in case a rollback needs it.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
  #checkov:skip=CKV_GCP_62:Holds only build archives of this repository; object reads are in Cloud Audit Logs, and a separate access-log bucket would be a second bucket to secure for no extra signal.
}

resource "google_storage_bucket_object" "function_source" {
  name   = "function-source-${data.archive_file.function_source.output_md5}.zip"
  bucket = google_storage_bucket.function_source.name
  source = data.archive_file.function_source.output_path
}

# Build images of the functions, with a dedicated repository so the build
# identity can write here and nowhere else.
resource "google_artifact_registry_repository" "functions" {
  repository_id = "integrations-functions"
  location      = var.region
  format        = "DOCKER"
  description   = "Container images Cloud Build makes from the integrations functions' source."

  # Images older than a month go, except the ten newest (rollback targets).
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }

  depends_on = [google_project_service.enabled]
  #checkov:skip=CKV_GCP_84:Images contain only this repository's public code and pip packages, no secret or customer data; Google-managed encryption is enough.
}

resource "google_cloudfunctions2_function" "functions" {
  for_each = toset(local.entry_points)

  # Function and Cloud Run service names allow hyphens, not underscores.
  name        = replace(each.key, "_", "-")
  location    = var.region
  description = "Provider integrations: ${each.key}"

  build_config {
    runtime           = "python311"
    entry_point       = each.key
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_source.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    available_memory                 = var.function_settings[each.key].memory
    available_cpu                    = var.function_settings[each.key].cpu
    timeout_seconds                  = var.function_settings[each.key].timeout_seconds
    max_instance_request_concurrency = var.function_settings[each.key].max_instance_request_concurrency
    max_instance_count               = var.function_settings[each.key].max_instance_count
    min_instance_count               = 0
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.runtime.email
    environment_variables            = local.function_environment

    # The API-key pepper reaches the code as an environment variable that
    # Cloud Run resolves from Secret Manager before the instance starts, so a
    # cold start loads no Secret Manager client and makes no call
    # (shared/app/wiring.py reads INTEGRATIONS_SECRET_API_KEY_PEPPER first). The
    # version is pinned: the pepper never changes (secrets.tf).
    secret_environment_variables {
      key        = "INTEGRATIONS_SECRET_API_KEY_PEPPER"
      project_id = var.project_id
      secret     = google_secret_manager_secret.api_key_pepper.secret_id
      version    = google_secret_manager_secret_version.api_key_pepper.version
    }

    # API Gateway reaches its backends over the internet, not from a VPC, so
    # the gateway's functions accept all network paths and rely on IAM: only
    # the gateway's identity holds run.invoker (iam.tf). Revalidation is
    # called only by Cloud Scheduler of this project, which counts as
    # internal traffic on the run.app URL; so does every admin route.
    # credential_access takes all network paths, like the gateway's functions:
    # pipelines may run outside this project's network, and IAM lets only
    # the pipelines' service account invoke it.
    ingress_settings = contains(local.admin_entry_points, each.key) ? "ALLOW_INTERNAL_ONLY" : "ALLOW_ALL"
  }

  depends_on = [
    google_project_iam_member.build_log_writer,
    google_project_iam_member.build_source_reader,
    google_artifact_registry_repository_iam_member.build_image_writer,
    google_kms_crypto_key_iam_member.runtime_credentials,
    google_kms_crypto_key_iam_member.runtime_key_rotator,
    google_bigquery_dataset_iam_member.runtime_data_editor,
    google_project_iam_member.runtime_job_user,
    google_secret_manager_secret_iam_member.runtime_pepper_accessor,
    google_secret_manager_secret_version.api_key_pepper,
  ]
  #checkov:skip=CKV_GCP_124:API Gateway reaches backends from outside any VPC, so gateway-routed functions need ALLOW_ALL; invocation is IAM-only (run.invoker for the gateway SA alone) and the admin routes are ALLOW_INTERNAL_ONLY.
}
