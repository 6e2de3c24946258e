/**
 * Compile-time proof that the client keeps the spec's contract; `npm run build` (tsc --strict)
 * fails if any line below stops holding. Each `Assert<...>` is a type that only exists when its
 * argument is `true`.
 *
 * 1. A call written from the spec compiles unchanged: the spec's parameter list is accepted.
 * 2. Every answer is assignable to the spec's result shape (success, the spec's fields, error).
 * 3. The one place the service answers more than the spec's IntegrationInfo allows is the status
 *    `expired`, which the spec's own lifecycle table names; the checks pin the difference to exactly
 *    that value, so any other drift fails the build.
 */
import type {
  deleteIntegration,
  getIntegrationStatus,
  getIntegrations,
  Integration,
  IntegrationStatus,
  ServiceValidationDetails,
  setupIntegration,
  validateIntegration,
} from "../src/client.js";
import type * as Spec from "../src/spec.js";

type Assert<Condition extends true> = Condition;
type IsAssignable<From, To> = [From] extends [To] ? true : false;
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Answer<F extends (...args: never[]) => Promise<unknown>> = Awaited<ReturnType<F>>;

/** An answer as a caller sees it after handling `expired` (every `status` without it). */
type WithSpecStatuses<T> = T extends readonly (infer Item)[]
  ? WithSpecStatuses<Item>[]
  : T extends object
    ? { [K in keyof T]: K extends "status" ? Exclude<T[K], "expired"> : WithSpecStatuses<T[K]> }
    : T;

// 1. The spec's parameter lists.
export type SetupParameters = Assert<
  IsAssignable<[string, string, Spec.CredentialInput, Spec.ProviderConfig?], Parameters<typeof setupIntegration>>
>;
export type ValidateParameters = Assert<IsAssignable<[string, string], Parameters<typeof validateIntegration>>>;
export type ListParameters = Assert<IsAssignable<[string], Parameters<typeof getIntegrations>>>;
export type GetParameters = Assert<IsAssignable<[string, string], Parameters<typeof getIntegrationStatus>>>;
export type DeleteParameters = Assert<IsAssignable<[string, string], Parameters<typeof deleteIntegration>>>;

// 2. The spec's result shapes.
export type SetupResult = Assert<IsAssignable<Answer<typeof setupIntegration>, Spec.SetupIntegrationResult>>;
export type ValidateResult = Assert<IsAssignable<Answer<typeof validateIntegration>, Spec.ValidateIntegrationResult>>;
export type DeleteResult = Assert<IsAssignable<Answer<typeof deleteIntegration>, Spec.DeleteIntegrationResult>>;
export type ListResult = Assert<
  IsAssignable<WithSpecStatuses<Answer<typeof getIntegrations>>, Spec.GetIntegrationsResult>
>;
export type GetResult = Assert<
  IsAssignable<WithSpecStatuses<Answer<typeof getIntegrationStatus>>, Spec.GetIntegrationStatusResult>
>;
// The spec's endpoint table: GET /{org}/{provider} returns an IntegrationInfo itself (fields at the top level).
export type GetIsAnIntegrationInfo = Assert<
  IsAssignable<WithSpecStatuses<Extract<Answer<typeof getIntegrationStatus>, { success: true }>>, Spec.IntegrationInfo>
>;
export type DetailsAreTheSpecs = Assert<IsAssignable<ServiceValidationDetails, Spec.ValidationDetails>>;

// 3. `expired` is the only status beyond the spec's interface, and the only thing in the way.
export type OnlyExpiredIsExtra = Assert<Equal<Exclude<IntegrationStatus, Spec.IntegrationInfo["status"]>, "expired">>;
export type EverySpecStatusIsKnown = Assert<IsAssignable<Spec.IntegrationInfo["status"], IntegrationStatus>>;
export type RestIsTheSpecs = Assert<IsAssignable<Omit<Integration, "status">, Omit<Spec.IntegrationInfo, "status">>>;
// Control: the checks above are not vacuous, the raw answer does carry `expired`.
export type ExpiredIsReallyThere = Assert<Equal<IsAssignable<Integration, Spec.IntegrationInfo>, false>>;
