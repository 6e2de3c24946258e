variable "region" {
  type        = string
  description = "Region of the AWS provider (IAM is global; this only picks the API endpoint)."
  default     = "us-east-1"
}

variable "role_name" {
  type        = string
  description = "Name of the platform's role; its ARN is what customers' trust policies name."
  default     = "provider-integrations-platform"
}

variable "gcp_service_account_unique_id" {
  type        = string
  description = "Numeric unique ID of the functions' runtime service account (gcloud iam service-accounts describe EMAIL --format='value(uniqueId)')."

  validation {
    condition     = can(regex("^[0-9]{21}$", var.gcp_service_account_unique_id))
    error_message = "gcp_service_account_unique_id is the 21-digit unique ID, not the email."
  }
}

variable "web_identity_audience" {
  type        = string
  description = "Audience the functions request their Google ID token for; must equal the functions' AWS_WEB_IDENTITY_AUDIENCE."
  default     = "provider-integrations-aws"
}

variable "customer_role_arn_patterns" {
  type        = list(string)
  description = "Roles the platform may assume; customers' roles still decide, through their trust policy and its sts:ExternalId condition."
  default     = ["arn:aws:iam::*:role/*"]
}
