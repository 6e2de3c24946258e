/** The integrations service's typed client and the spec's interfaces, as the spec writes them. */
export type {
  CredentialInput,
  DeleteIntegrationResult,
  GetIntegrationStatusResult,
  GetIntegrationsResult,
  IntegrationInfo,
  ProviderConfig,
  SetupIntegrationResult,
  ValidateIntegrationResult,
  ValidationDetails,
} from "./spec.js";
export * from "./client.js";
export type { components, paths } from "./generated/openapi.js";
export { PROVIDERS, type ProviderForm, type FieldForm } from "./generated/providers.js";
