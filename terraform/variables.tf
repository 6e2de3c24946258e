# Inputs. Only project_id has no default; everything else is a production
# default that an environment may override in its *.tfvars.

variable "project_id" {
  type        = string
  description = "Google Cloud project that hosts the whole stack (functions, dataset, KMS key, gateway, scheduler)."
}

variable "region" {
  type        = string
  description = "Region of the Cloud Functions, the source bucket, the Artifact Registry repository and the Cloud Scheduler job."
  default     = "us-central1"
}

variable "gateway_region" {
  type        = string
  description = "Region of the API Gateway gateway (API Gateway runs in a subset of regions, e.g. us-central1, us-east1, europe-west1, asia-northeast1)."
  default     = "us-central1"
}

variable "function_source_dir" {
  type        = string
  description = "Directory zipped into the functions' source archive. null means the repository root (the parent of this terraform/ directory)."
  default     = null
}

variable "bigquery_dataset_id" {
  type        = string
  description = "BigQuery dataset holding integrations, credentials, audit log and API keys (the service's BIGQUERY_DATASET)."
  default     = "organizations"
}

variable "bigquery_location" {
  type        = string
  description = "Location of the BigQuery dataset (the service's BIGQUERY_LOCATION). The KMS key ring is created in the same location, as BigQuery CMEK requires."
  default     = "US"
}

variable "kms_key_ring_name" {
  type        = string
  description = "Name of the Cloud KMS key ring. Key rings cannot be deleted, so a new name is needed to start over in the same project."
  default     = "provider-integrations"
}

variable "kms_rotation_period" {
  type        = string
  description = "Automatic rotation period of the crypto keys, in seconds with an 's' suffix (7776000s = 90 days). Old versions keep decrypting."
  default     = "7776000s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.kms_rotation_period)) && try(tonumber(trimsuffix(var.kms_rotation_period, "s")) >= 86400 && tonumber(trimsuffix(var.kms_rotation_period, "s")) <= 7776000, false)
    error_message = "kms_rotation_period must be between 86400s (1 day) and 7776000s (90 days), written like \"7776000s\"."
  }
}

variable "kms_protection_level" {
  type        = string
  description = "Protection level of new crypto key versions: SOFTWARE or HSM."
  default     = "SOFTWARE"

  validation {
    condition     = contains(["SOFTWARE", "HSM"], var.kms_protection_level)
    error_message = "kms_protection_level must be SOFTWARE or HSM."
  }
}

variable "function_settings" {
  type = map(object({
    memory                           = string
    cpu                              = string
    timeout_seconds                  = number
    max_instance_request_concurrency = number
    max_instance_count               = number
  }))
  description = "Per-function runtime settings keyed by entry point. Every entry point of main.py needs an entry; concurrency above 1 needs cpu of at least \"1\"."
  default = {
    integration_setup = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 8
      max_instance_count               = 10
    }
    integration_validate = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 8
      max_instance_count               = 10
    }
    integration_list = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 16
      max_instance_count               = 10
    }
    integration_get = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 16
      max_instance_count               = 10
    }
    integration_update = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 8
      max_instance_count               = 10
    }
    integration_delete = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 8
      max_instance_count               = 10
    }
    integration_rotate = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 8
      max_instance_count               = 10
    }
    webhook_set = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 8
      max_instance_count               = 5
    }
    webhook_get = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 8
      max_instance_count               = 5
    }
    webhook_delete = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 8
      max_instance_count               = 5
    }
    alerts_list = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 16
      max_instance_count               = 5
    }
    oauth_start = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 8
      max_instance_count               = 5
    }
    # The browser waits on it: the code exchange and holding the tokens for the org.
    oauth_callback = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 8
      max_instance_count               = 5
    }
    # The org's confirmation: validation of the access token and the store write.
    oauth_complete = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 8
      max_instance_count               = 5
    }
    subscription_providers_list = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 16
      max_instance_count               = 5
    }
    subscription_provider_update = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 8
      max_instance_count               = 5
    }
    aws_setup_instructions = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 16
      max_instance_count               = 5
    }
    # Up to 100 credentials per request: encrypts and validates on a pool.
    integration_import = {
      memory                           = "1Gi"
      cpu                              = "1"
      timeout_seconds                  = 300
      max_instance_request_concurrency = 4
      max_instance_count               = 5
    }
    admin_keys = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 4
      max_instance_count               = 1
    }
    admin_key_rotate = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 1
      max_instance_count               = 1
    }
    # One run at a time (a second would only skip what the first writes).
    admin_key_rewrap = {
      memory                           = "1Gi"
      cpu                              = "1"
      timeout_seconds                  = 540
      max_instance_request_concurrency = 1
      max_instance_count               = 1
    }
    # The pipelines' read side: many short calls (one store read, one decrypt, one token call).
    credential_access = {
      memory                           = "512Mi"
      cpu                              = "1"
      timeout_seconds                  = 60
      max_instance_request_concurrency = 16
      max_instance_count               = 20
    }
    # One run at a time: it reads and writes every integration in one batch.
    integration_revalidate = {
      memory                           = "1Gi"
      cpu                              = "1"
      timeout_seconds                  = 540
      max_instance_request_concurrency = 1
      max_instance_count               = 1
    }
  }
}

variable "revalidate_schedule" {
  type        = string
  description = "Cron schedule (Cloud Scheduler syntax) of the revalidation job; every 6 hours by default."
  default     = "0 */6 * * *"
}

variable "revalidate_time_zone" {
  type        = string
  description = "Time zone the scheduled jobs (revalidation, re-encryption) are read in."
  default     = "Etc/UTC"
}

variable "revalidate_path" {
  type        = string
  description = "Path the scheduler POSTs to on the revalidation function; must match the route of main.py's integration_revalidate."
  default     = "/api/v1/admin/revalidate"
}

variable "rewrap_schedule" {
  type        = string
  description = "Cron schedule of the job that moves credentials onto the primary KMS key version (after automatic rotations); daily by default."
  default     = "30 3 * * *"
}

variable "rewrap_path" {
  type        = string
  description = "Path the scheduler POSTs to on the re-encryption function; must match the route of main.py's admin_key_rewrap."
  default     = "/api/v1/admin/keys/rewrap"
}

variable "key_operator_members" {
  type        = list(string)
  description = "IAM members (e.g. group:secops@example.com) allowed to invoke the key report, rotation and re-encryption functions; empty by default (operators then use `python -m shared.cli`)."
  default     = []
}

variable "log_level" {
  type        = string
  description = "LOG_LEVEL of every function (DEBUG, INFO, WARNING, ERROR)."
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "pipelines_service_account" {
  type        = string
  description = "Email of the cost pipelines' service account: the only identity that may invoke credential_access (roles/run.invoker on that function alone; the function checks the token's email too). Empty: no one may."
  default     = ""

  validation {
    condition     = var.pipelines_service_account == "" || can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\\.iam\\.gserviceaccount\\.com$", var.pipelines_service_account))
    error_message = "pipelines_service_account must be a service account email (name@project.iam.gserviceaccount.com) or empty."
  }
}

variable "aws_platform_role_arn" {
  type        = string
  description = "ARN of the platform's AWS role that customers' roles trust (terraform/aws-platform-role creates it); empty disables AWS integrations."
  default     = ""

  validation {
    condition     = var.aws_platform_role_arn == "" || can(regex("^arn:(aws|aws-cn|aws-us-gov):iam::[0-9]{12}:role/", var.aws_platform_role_arn))
    error_message = "aws_platform_role_arn must be an IAM role ARN or empty."
  }
}

variable "aws_web_identity_audience" {
  type        = string
  description = "Audience of the Google ID token the functions exchange for the platform's AWS role (its trust policy checks it)."
  default     = "provider-integrations-aws"
}

variable "oauth_redirect_uri" {
  type        = string
  description = "Public URL of GET /api/v1/oauth/callback (the oauth_callback_url output), registered as the redirect URI of every OAuth app. Empty until set: the gateway's host is known only after the first apply."
  default     = ""

  validation {
    condition     = var.oauth_redirect_uri == "" || can(regex("^https://[^/]+/api/v1/oauth/callback$", var.oauth_redirect_uri))
    error_message = "oauth_redirect_uri must be https://<host>/api/v1/oauth/callback, or empty."
  }
}

variable "oauth_frontend_url" {
  type        = string
  description = "Where the OAuth callback redirects the browser, with the outcome in the query (oauth=authorized, org, provider and the one-time completion_code the frontend confirms with the org's key; or oauth=failed, code and message). Empty: the callback answers JSON."
  default     = ""

  validation {
    condition     = var.oauth_frontend_url == "" || can(regex("^https://", var.oauth_frontend_url))
    error_message = "oauth_frontend_url must be an https URL, or empty."
  }
}

variable "cors_allowed_origins" {
  type        = list(string)
  description = "Browser origins (scheme://host[:port]) allowed to call the API from a web frontend (CORS). Empty: no CORS headers."
  default     = []

  validation {
    condition     = alltrue([for origin in var.cors_allowed_origins : can(regex("^https?://[^/,*]+$", origin))])
    error_message = "cors_allowed_origins entries must be origins like https://app.example.com (no path, no wildcard)."
  }
}
