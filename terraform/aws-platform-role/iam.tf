# The platform role: assumed only with a Google-signed ID token of the
# functions' runtime service account (no AWS access key exists anywhere), and
# allowed to do one thing: assume customers' roles, which require the org's
# external ID.

resource "aws_iam_role" "platform" {
  name                 = var.role_name
  description          = "Provider integrations: reads customers' cost exports through their own roles"
  max_session_duration = 3600

  # Google federation condition keys: accounts.google.com:aud is the token's
  # azp (the service account's unique ID), :oaud its aud (the audience asked
  # for), :sub the service account's unique ID.
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = "accounts.google.com" }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "accounts.google.com:aud"  = var.gcp_service_account_unique_id
          "accounts.google.com:sub"  = var.gcp_service_account_unique_id
          "accounts.google.com:oaud" = var.web_identity_audience
        }
      }
    }]
  })
}

resource "aws_iam_role_policy" "assume_customer_roles" {
  name = "assume-customer-roles"
  role = aws_iam_role.platform.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "AssumeCustomerRoles"
      Effect   = "Allow"
      Action   = "sts:AssumeRole"
      Resource = var.customer_role_arn_patterns
    }]
  })
}
