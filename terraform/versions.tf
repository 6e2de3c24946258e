# Terraform, provider pins and the state backend.
#
# The backend is a partial "gcs" configuration: the state bucket is given at
# init time (cloudbuild.yaml passes the _TF_STATE_BUCKET substitution), so no
# project-specific name lives in the code:
#
#   terraform init -backend-config="bucket=STATE_BUCKET" -backend-config="prefix=provider-integrations"

terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    # API Gateway resources exist only in the beta provider.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}
