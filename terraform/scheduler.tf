# Revalidation on a schedule: Cloud Scheduler POSTs to the revalidation
# function with an OIDC token of its own service account, the only identity
# allowed to invoke that function (iam.tf).

locals {
  revalidate_function = google_cloudfunctions2_function.functions[local.revalidate_entry_point]
}

resource "google_cloud_scheduler_job" "revalidate" {
  name        = "integrations-revalidate"
  region      = var.region
  description = "Revalidate every active integration against its provider."
  schedule    = var.revalidate_schedule
  time_zone   = var.revalidate_time_zone

  # HTTP targets allow at most 30 minutes.
  attempt_deadline = "${min(var.function_settings[local.revalidate_entry_point].timeout_seconds, 1800)}s"

  retry_config {
    retry_count          = 1
    min_backoff_duration = "300s"
  }

  http_target {
    http_method = "POST"
    uri         = "${local.revalidate_function.service_config[0].uri}${var.revalidate_path}"
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      # Cloud Run accepts tokens whose audience is the service URL.
      audience = local.revalidate_function.service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.scheduler_invoker]
}

# Re-encryption onto the primary key version: Cloud KMS rotates the key every
# rotation period; this job then moves every credential onto the new primary,
# so an operator can disable an old version once GET /api/v1/admin/keys shows
# it unused. Resumable: each run continues where the last one stopped.
locals {
  rewrap_function = google_cloudfunctions2_function.functions[local.rewrap_entry_point]
}

resource "google_cloud_scheduler_job" "rewrap" {
  name        = "integrations-rewrap"
  region      = var.region
  description = "Re-encrypt credentials onto the primary KMS key version."
  schedule    = var.rewrap_schedule
  time_zone   = var.revalidate_time_zone

  attempt_deadline = "${min(var.function_settings[local.rewrap_entry_point].timeout_seconds, 1800)}s"

  retry_config {
    retry_count          = 1
    min_backoff_duration = "300s"
  }

  http_target {
    http_method = "POST"
    uri         = "${local.rewrap_function.service_config[0].uri}${var.rewrap_path}"
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.rewrap_function.service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.scheduler_rewrap_invoker]
}
