/**
 * The integrations service's client: the spec's five server actions with the spec's signatures,
 * and the service's other operations a settings page needs (update, rotate, the SaaS subscription
 * toggles, the OAuth start and completion, the AWS setup instructions).
 *
 * Requests and answers are typed from openapi.yaml (generated into ./generated/openapi.ts by the
 * build), so the client cannot drift from the contract the server is tested against. Every action
 * resolves, never rejects: an HTTP error, a network failure or a missing key becomes
 * `{success: false, error, code, http_status}` with the service's own message, as the spec's
 * actions answer `{success, error?}`.
 */
import createClient from "openapi-fetch";

import type { components, paths } from "./generated/openapi.js";
import type { CredentialInput, ProviderConfig } from "./spec.js";

type Schemas = components["schemas"];

/** An integration as the service answers it: the spec's IntegrationInfo plus lifecycle fields of ours. */
export type Integration = Schemas["IntegrationInfo"];
/** The spec's statuses plus `expired`, which the spec's lifecycle table names and its interface leaves out. */
export type IntegrationStatus = Schemas["Status"];
/** The spec's ValidationDetails plus per-capability results, per-pipeline readiness and the fix. */
export type ServiceValidationDetails = Schemas["ValidationDetails"];
/** What a setup or rotation may carry: the spec's CredentialInput, an AWS role ARN, or an Azure service principal. */
export type ServiceCredentialInput = Schemas["CredentialInput"];
/** One provider's config fields (the registry's config_fields). */
export type ServiceProviderConfig = Schemas["ProviderConfig"];
export type SubscriptionProvider = Schemas["SubscriptionProvider"];
/** A provider id of the registry (configs/system/providers.yml). */
export type ProviderId = components["parameters"]["Provider"];
export type AwsSetupInstructions = Schemas["AwsSetupInstructions"]["instructions"];

/** Any failed action: the service's message, or this client's when no answer came. */
export interface ServiceFailure {
  success: false;
  /** The service's message (the spec's error table where it names one). */
  error: string;
  /** The service's error code (`not_found`, `conflict`, ...), or this client's own:
   * `network_error`, `timeout`, `bad_response`, `missing_api_key`, `not_configured`. */
  code: string;
  /** The HTTP status; 0 when no answer came. */
  http_status: number;
  request_id?: string;
  /** The error's details when the service sent some (a 400's `problems`, the field it names). */
  error_details?: Record<string, unknown>;
}

export type SetupIntegrationAnswer = Schemas["Created"] | ServiceFailure;
/** A credential the provider rejects is an answer (`success: false`, status `error`, `details.fix`), not a failure. */
export type ValidateIntegrationAnswer = Schemas["ValidationResponse"] | ServiceFailure;
export type GetIntegrationsAnswer = Schemas["IntegrationList"] | ServiceFailure;
export type GetIntegrationStatusAnswer = Schemas["IntegrationDocument"] | ServiceFailure;
export type DeleteIntegrationAnswer = Schemas["Deleted"] | ServiceFailure;
export type UpdateIntegrationAnswer = Schemas["IntegrationEnvelope"] | ServiceFailure;
export type RotateCredentialsAnswer = Schemas["Rotated"] | ServiceFailure;
export type SubscriptionProvidersAnswer = Schemas["SubscriptionProviderList"] | ServiceFailure;
export type SetSubscriptionProviderAnswer = Schemas["SubscriptionProviderEnvelope"] | ServiceFailure;
export type StartOAuthAnswer = Schemas["OAuthStarted"] | ServiceFailure;
export type AwsSetupInstructionsAnswer = Schemas["AwsSetupInstructions"] | ServiceFailure;

/** The callback's JSON answer when OAUTH_FRONTEND_URL is unset: the one-time code, never a token. */
export type OAuthAuthorized = Schemas["OAuthAuthorized"];
/** The completion's answer: the tokens are stored (and validated) only now, with the org's own key. */
export type OAuthConnected = Schemas["OAuthConnected"];
export type CompleteOAuthAnswer = OAuthConnected | ServiceFailure;

export type IntegrationChanges = Schemas["UpdateRequest"];

export interface IntegrationsClientOptions {
  /** Where the API is: the local server, the API Gateway's base URL, or a function URL. */
  baseUrl: string;
  /** The organization's API key, or a function that finds it (a server action looks it up per org). */
  apiKey: string | ((orgSlug: string) => string | undefined | Promise<string | undefined>);
  /** The acting user, sent as X-User-Id (recorded as created_by and in the audit log). */
  userId?: string | (() => string | undefined);
  /** Per-request time limit in milliseconds (default 30 000: a validation may retry for 10 s). */
  timeoutMs?: number;
  /** Another fetch (tests, instrumentation); the platform's own by default. */
  fetch?: typeof globalThis.fetch;
}

export interface IntegrationActions {
  setupIntegration(
    orgSlug: string,
    provider: string,
    credentials: CredentialInput | ServiceCredentialInput,
    config?: ProviderConfig | ServiceProviderConfig,
  ): Promise<SetupIntegrationAnswer>;
  validateIntegration(orgSlug: string, provider: string): Promise<ValidateIntegrationAnswer>;
  getIntegrations(orgSlug: string): Promise<GetIntegrationsAnswer>;
  getIntegrationStatus(orgSlug: string, provider: string): Promise<GetIntegrationStatusAnswer>;
  deleteIntegration(orgSlug: string, provider: string): Promise<DeleteIntegrationAnswer>;
  /** Change config or expiry, or disable (`enabled: false`) / re-enable (`enabled: true`, then `pending`). */
  updateIntegration(orgSlug: string, provider: string, changes: IntegrationChanges): Promise<UpdateIntegrationAnswer>;
  /** Replace the credential; the service validates the new one first and keeps the old one if it fails. */
  rotateCredentials(
    orgSlug: string,
    provider: string,
    newCredentials: CredentialInput | ServiceCredentialInput,
    options?: { expires_at?: string | null },
  ): Promise<RotateCredentialsAnswer>;
  getSubscriptionProviders(orgSlug: string): Promise<SubscriptionProvidersAnswer>;
  setSubscriptionProvider(orgSlug: string, provider: string, enabled: boolean): Promise<SetSubscriptionProviderAnswer>;
  /** Begin an OAuth connection: send the user's browser to the answer's `authorize_url`. */
  startOAuth(orgSlug: string, provider: string, config?: ServiceProviderConfig): Promise<StartOAuthAnswer>;
  /** Finish an OAuth connection: the one-time `completion_code` the callback handed the frontend, sent with
   * this org's key, stores the tokens. A code of another org or provider, used or expired is refused (400). */
  completeOAuth(orgSlug: string, provider: string, completionCode: string): Promise<CompleteOAuthAnswer>;
  /** AWS: the org's external ID and the role to create (policies, CloudFormation template, steps). */
  getAwsSetupInstructions(
    orgSlug: string,
    placement?: { export_bucket?: string; export_prefix?: string },
  ): Promise<AwsSetupInstructionsAnswer>;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** Our own failure, for when the service gave no usable answer. */
export function clientFailure(code: string, error: string, http_status = 0): ServiceFailure {
  return { success: false, error, code, http_status };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The service's error body as a ServiceFailure; a body that is not ours still gets a message in words. */
function failureFrom(response: Response, body: unknown): ServiceFailure {
  if (isRecord(body) && typeof body["error"] === "string") {
    const failure: ServiceFailure = {
      success: false,
      error: body["error"],
      code: typeof body["code"] === "string" ? body["code"] : `http_${response.status}`,
      http_status: response.status,
    };
    if (typeof body["request_id"] === "string") failure.request_id = body["request_id"];
    if (isRecord(body["details"])) failure.error_details = body["details"];
    return failure;
  }
  return clientFailure(
    "bad_response",
    `The integrations service answered HTTP ${response.status} without its JSON error`,
    response.status,
  );
}

function failureOfThrown(error: unknown, baseUrl: string): ServiceFailure {
  const name = error instanceof Error ? error.name : "";
  if (name === "TimeoutError" || name === "AbortError") {
    return clientFailure("timeout", `The integrations service at ${baseUrl} did not answer in time`);
  }
  if (name === "SyntaxError") {
    return clientFailure("bad_response", "The integrations service answered something that is not JSON");
  }
  // fetch's TypeError says little ("fetch failed", "Failed to fetch") and never quotes the request.
  return clientFailure("network_error", `Unable to reach the integrations service at ${baseUrl}`);
}

/** Build the actions over one base URL and key source. */
export function createIntegrationActions(options: IntegrationsClientOptions): IntegrationActions {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const fetchImpl = options.fetch ?? ((input: Request) => globalThis.fetch(input));
  const api = createClient<paths>({ baseUrl, fetch: fetchImpl });

  async function headersFor(orgSlug: string): Promise<Record<string, string> | ServiceFailure> {
    let key: string | undefined;
    try {
      key = typeof options.apiKey === "function" ? await options.apiKey(orgSlug) : options.apiKey;
    } catch {
      key = undefined;
    }
    if (!key) {
      return clientFailure("missing_api_key", `No API key for organization ${orgSlug}`);
    }
    const headers: Record<string, string> = { "X-API-Key": key };
    const user = typeof options.userId === "function" ? options.userId() : options.userId;
    if (user) headers["X-User-Id"] = user;
    return headers;
  }

  /** One request: its answer when the service succeeded (or answered a verdict), else a ServiceFailure. */
  async function send<T>(
    orgSlug: string,
    request: (init: { headers: Record<string, string>; signal: AbortSignal }) => Promise<{
      data?: T;
      error?: unknown;
      response: Response;
    }>,
  ): Promise<T | ServiceFailure> {
    const headers = await headersFor(orgSlug);
    if ("success" in headers) return headers as ServiceFailure;
    try {
      const { data, error, response } = await request({ headers, signal: AbortSignal.timeout(timeoutMs) });
      if (response.ok && data !== undefined) return data;
      return failureFrom(response, error);
    } catch (thrown) {
      return failureOfThrown(thrown, baseUrl);
    }
  }

  const path = (org_slug: string, provider: string) => ({ path: { org_slug, provider: provider as ProviderId } });

  return {
    setupIntegration: (orgSlug, provider, credentials, config) =>
      send(orgSlug, (init) =>
        api.POST("/api/v1/integrations/{org_slug}/{provider}/setup", {
          ...init,
          params: path(orgSlug, provider),
          body: {
            credentials: credentials as ServiceCredentialInput,
            ...(config === undefined ? {} : { config: config as ServiceProviderConfig }),
          },
        }),
      ),
    validateIntegration: (orgSlug, provider) =>
      send(orgSlug, (init) =>
        api.POST("/api/v1/integrations/{org_slug}/{provider}/validate", { ...init, params: path(orgSlug, provider) }),
      ),
    getIntegrations: (orgSlug) =>
      send(orgSlug, (init) =>
        api.GET("/api/v1/integrations/{org_slug}", { ...init, params: { path: { org_slug: orgSlug } } }),
      ),
    getIntegrationStatus: (orgSlug, provider) =>
      send(orgSlug, (init) =>
        api.GET("/api/v1/integrations/{org_slug}/{provider}", { ...init, params: path(orgSlug, provider) }),
      ),
    deleteIntegration: (orgSlug, provider) =>
      send(orgSlug, (init) =>
        api.DELETE("/api/v1/integrations/{org_slug}/{provider}", { ...init, params: path(orgSlug, provider) }),
      ),
    updateIntegration: (orgSlug, provider, changes) =>
      send(orgSlug, (init) =>
        api.PUT("/api/v1/integrations/{org_slug}/{provider}", {
          ...init,
          params: path(orgSlug, provider),
          body: changes,
        }),
      ),
    rotateCredentials: (orgSlug, provider, newCredentials, rotation) =>
      send(orgSlug, (init) =>
        api.POST("/api/v1/integrations/{org_slug}/{provider}/rotate", {
          ...init,
          params: path(orgSlug, provider),
          body: {
            new_credentials: newCredentials as ServiceCredentialInput,
            ...(rotation?.expires_at === undefined ? {} : { expires_at: rotation.expires_at }),
          },
        }),
      ),
    getSubscriptionProviders: (orgSlug) =>
      send(orgSlug, (init) =>
        api.GET("/api/v1/subscriptions/{org_slug}/providers", { ...init, params: { path: { org_slug: orgSlug } } }),
      ),
    setSubscriptionProvider: (orgSlug, provider, enabled) =>
      send(orgSlug, (init) =>
        api.PUT("/api/v1/subscriptions/{org_slug}/providers/{provider}", {
          ...init,
          params: path(orgSlug, provider),
          body: { enabled },
        }),
      ),
    startOAuth: (orgSlug, provider, config) =>
      send(orgSlug, (init) =>
        api.POST("/api/v1/integrations/{org_slug}/{provider}/oauth/start", {
          ...init,
          params: path(orgSlug, provider),
          body: config === undefined ? {} : { config },
        }),
      ),
    completeOAuth: (orgSlug, provider, completionCode) =>
      send(orgSlug, (init) =>
        api.POST("/api/v1/integrations/{org_slug}/{provider}/oauth/complete", {
          ...init,
          params: path(orgSlug, provider),
          body: { completion_code: completionCode },
        }),
      ),
    getAwsSetupInstructions: (orgSlug, placement) =>
      send(orgSlug, (init) =>
        api.GET("/api/v1/integrations/{org_slug}/aws/setup-instructions", {
          ...init,
          params: { path: { org_slug: orgSlug }, query: placement ?? {} },
        }),
      ),
  };
}

let configured: IntegrationActions | undefined;

/** Point the module-level actions below at a service (once, at start-up of a server-side app). */
export function configureIntegrations(options: IntegrationsClientOptions): IntegrationActions {
  configured = createIntegrationActions(options);
  return configured;
}

const NOT_CONFIGURED = clientFailure(
  "not_configured",
  "The integrations client is not configured: call configureIntegrations({baseUrl, apiKey}) first",
);

function actions(): IntegrationActions | undefined {
  return configured;
}

// The spec's five server actions, with its signatures (the parameters also take the service's
// wider credential and config shapes, so AWS, Azure and SaaS connect through the same calls).

export async function setupIntegration(
  orgSlug: string,
  provider: string,
  credentials: CredentialInput | ServiceCredentialInput,
  config?: ProviderConfig | ServiceProviderConfig,
): Promise<SetupIntegrationAnswer> {
  return actions()?.setupIntegration(orgSlug, provider, credentials, config) ?? { ...NOT_CONFIGURED };
}

export async function validateIntegration(orgSlug: string, provider: string): Promise<ValidateIntegrationAnswer> {
  return actions()?.validateIntegration(orgSlug, provider) ?? { ...NOT_CONFIGURED };
}

export async function getIntegrations(orgSlug: string): Promise<GetIntegrationsAnswer> {
  return actions()?.getIntegrations(orgSlug) ?? { ...NOT_CONFIGURED };
}

export async function getIntegrationStatus(orgSlug: string, provider: string): Promise<GetIntegrationStatusAnswer> {
  return actions()?.getIntegrationStatus(orgSlug, provider) ?? { ...NOT_CONFIGURED };
}

export async function deleteIntegration(orgSlug: string, provider: string): Promise<DeleteIntegrationAnswer> {
  return actions()?.deleteIntegration(orgSlug, provider) ?? { ...NOT_CONFIGURED };
}
