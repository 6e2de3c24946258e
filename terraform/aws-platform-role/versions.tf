# The platform's own AWS identity, applied once by an operator of the
# platform's AWS account (a separate stack from ../: it needs AWS, not Google,
# credentials to apply, and its state holds no secret).
#
#   terraform init -backend-config="bucket=STATE_BUCKET" -backend-config="key=aws-platform-role.tfstate" -backend-config="region=us-east-1"
#   terraform apply -var="gcp_service_account_unique_id=$(gcloud iam service-accounts describe \
#       "$(terraform -chdir=.. output -raw runtime_service_account_email)" --format='value(uniqueId)')"
#
# Then set the root stack's aws_platform_role_arn to this stack's role_arn output.

terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }

  backend "s3" {}
}

provider "aws" {
  region = var.region
}
