# What callers need: where to send requests, what was deployed, which key and
# identity the service uses.

output "base_url" {
  description = "Public base URL; the spec's paths (/api/v1/integrations/...) are served under it."
  value       = "https://${google_api_gateway_gateway.integrations.default_hostname}"
}

output "function_names" {
  description = "Deployed Cloud Function name per entry point."
  value       = { for entry_point, function in google_cloudfunctions2_function.functions : entry_point => function.name }
}

output "kms_key_id" {
  description = "Crypto key the service encrypts credentials with (its KMS_KEY_NAME)."
  value       = google_kms_crypto_key.credentials.id
}

output "runtime_service_account_email" {
  description = "Identity the functions run as; an operator needs its permissions to run shared.cli against production."
  value       = google_service_account.runtime.email
}

output "oauth_callback_url" {
  description = "Redirect URI to register with every OAuth provider's app, and to set as oauth_redirect_uri."
  value       = "https://${google_api_gateway_gateway.integrations.default_hostname}/api/v1/oauth/callback"
}
