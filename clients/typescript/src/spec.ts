/**
 * The product spec's TypeScript, exactly as the spec writes it: its four interfaces and the
 * result shapes of its five server actions (the spec writes those inline; they are named here
 * so a caller and the type checks can refer to them). Nothing here is this service's own: the
 * client's answers carry more beside these fields, never instead of them, and
 * `test/spec-types.ts` proves at compile time that every answer is assignable to these shapes.
 */

export interface IntegrationInfo {
  integration_id: string
  org_slug: string
  provider: string
  status: 'pending' | 'validating' | 'active' | 'error' | 'disabled'
  config: Record<string, unknown>
  validated_at?: string
  error_message?: string
  created_at: string
  updated_at: string
}

export interface CredentialInput {
  api_key?: string
  service_account_json?: string
  oauth_token?: string
}

export interface ProviderConfig {
  // GCP
  project_id?: string
  billing_dataset_id?: string
  billing_project_id?: string

  // LLM
  organization_id?: string
  default_model?: string
}

export interface ValidationDetails {
  connection: boolean
  permissions: boolean
  models?: string[]
  tier?: string
  message?: string
}

/** setupIntegration()'s answer. */
export type SetupIntegrationResult = {
  success: boolean,
  integration_id?: string,
  error?: string
}

/** validateIntegration()'s answer. */
export type ValidateIntegrationResult = {
  success: boolean,
  status?: string,
  details?: ValidationDetails,
  error?: string
}

/** getIntegrations()'s answer. */
export type GetIntegrationsResult = {
  success: boolean,
  integrations?: IntegrationInfo[],
  error?: string
}

/** getIntegrationStatus()'s answer. */
export type GetIntegrationStatusResult = {
  success: boolean,
  integration?: IntegrationInfo,
  error?: string
}

/** deleteIntegration()'s answer. */
export type DeleteIntegrationResult = {
  success: boolean,
  error?: string
}
