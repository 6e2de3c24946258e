/**
 * The client against the real service (test/stack.ts starts it with its simulators): every action,
 * every error the contract documents for it, and, at run time, the spec's shapes: optional fields
 * absent rather than null, statuses within the spec's union (plus `expired`), `details` where the
 * spec's ValidationDetails puts its fields.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  configureIntegrations,
  createIntegrationActions,
  deleteIntegration,
  getIntegrationStatus,
  getIntegrations,
  type IntegrationActions,
  type OAuthAuthorized,
  type ServiceFailure,
  setupIntegration,
  validateIntegration,
} from "../src/index.js";
import { freePort, type Stack, startStack } from "./stack.js";

// Shaped like real keys; the simulators pick their answer from a marker inside (docs/walkthroughs/llm.md: "markers").
const OPENAI_ADMIN_KEY = "sk-admin-TestKeyAbcdefghijklmnop0123456789";
const ANTHROPIC_STANDARD_KEY = "sk-ant-api03-TestKeyAbcdefghijklmnop0123456789";
const withMarker = (marker: string, key = OPENAI_ADMIN_KEY) => key.replace("TestKey", `${marker}-TestKey`);
const SPEC_STATUSES = ["pending", "validating", "active", "error", "disabled"];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function assertNoNull(value: unknown, where: string): void {
  assert.notEqual(value, null, `${where} is null; the spec's optional fields are absent instead`);
  if (Array.isArray(value)) value.forEach((item, index) => assertNoNull(item, `${where}[${index}]`));
  else if (isRecord(value)) for (const [name, item] of Object.entries(value)) assertNoNull(item, `${where}.${name}`);
}

/** The spec's IntegrationInfo, checked at run time on a real answer. */
function assertSpecIntegrationInfo(value: unknown): void {
  assert.ok(isRecord(value), "an IntegrationInfo is an object");
  for (const name of ["integration_id", "org_slug", "provider", "created_at", "updated_at"]) {
    assert.equal(typeof value[name], "string", `${name} is a string`);
  }
  assert.ok([...SPEC_STATUSES, "expired"].includes(value["status"] as string), `status ${String(value["status"])}`);
  assert.ok(isRecord(value["config"]), "config is an object");
  for (const name of ["validated_at", "error_message"]) {
    assert.ok(!(name in value) || typeof value[name] === "string", `${name} is absent or a string`);
  }
  assertNoNull(value, "integration");
}

function assertSpecValidationDetails(value: unknown): void {
  assert.ok(isRecord(value), "details is an object");
  assert.equal(typeof value["connection"], "boolean");
  assert.equal(typeof value["permissions"], "boolean");
  if ("models" in value) assert.ok(Array.isArray(value["models"]) && value["models"].every((m) => typeof m === "string"));
  for (const name of ["tier", "message"]) assert.ok(!(name in value) || typeof value[name] === "string", name);
}

function assertFailure(answer: { success: boolean }, status: number, code: string, message?: string | RegExp): ServiceFailure {
  assert.equal(answer.success, false, JSON.stringify(answer));
  const failure = answer as ServiceFailure;
  assert.equal(failure.http_status, status, JSON.stringify(failure));
  assert.equal(failure.code, code, JSON.stringify(failure));
  assert.equal(typeof failure.error, "string");
  if (typeof message === "string") assert.equal(failure.error, message);
  else if (message) assert.match(failure.error, message);
  return failure;
}

let stack: Stack;
let orgKey: string;
let actions: IntegrationActions;

before(async () => {
  stack = await startStack();
  orgKey = stack.createKey("acme");
  actions = createIntegrationActions({ baseUrl: stack.base, apiKey: orgKey, userId: "ada@example.com" });
});

after(async () => {
  await stack?.stop();
});

test("the spec's actions answer a failure in words until the client is configured", async () => {
  assertFailure(await getIntegrations("acme"), 0, "not_configured", /configureIntegrations/);
  configureIntegrations({ baseUrl: `${stack.base}/`, apiKey: (org) => (org === "acme" ? orgKey : undefined) });
  assertFailure(await getIntegrations("globex"), 0, "missing_api_key", "No API key for organization globex");
});

describe("the spec's five server actions", () => {
  test("connect, validate, list, get and delete OpenAI", async () => {
    const created = await setupIntegration("acme", "openai", { api_key: OPENAI_ADMIN_KEY }, { default_model: "gpt-4o" });
    assert.equal(created.success, true, JSON.stringify(created));
    assert.ok(created.success && created.integration_id.length > 0);
    assertSpecIntegrationInfo(created.success && created.integration);

    const validated = await validateIntegration("acme", "openai");
    assert.equal(validated.success, true, JSON.stringify(validated));
    assert.ok("status" in validated && validated.status === "active");
    assertSpecValidationDetails(validated.details);
    assert.ok(validated.details.connection && validated.details.permissions);
    assert.equal(validated.details.pipelines?.["cost/usage_cost"]?.ready, true, "an admin key can read costs");

    const listed = await getIntegrations("acme");
    assert.ok(listed.success, JSON.stringify(listed));
    assert.deepEqual(listed.integrations.map((item) => item.provider), ["openai"]);
    listed.integrations.forEach(assertSpecIntegrationInfo);

    const got = await getIntegrationStatus("acme", "openai");
    assert.ok(got.success, JSON.stringify(got));
    assertSpecIntegrationInfo(got.integration);
    // The spec's GET answer is the IntegrationInfo itself: the same fields at the top level.
    const { success: _success, integration, ...topLevel } = got;
    assert.deepEqual(topLevel, integration);
    assert.equal(got.status, "active");
    assert.equal(got.config["default_model" as keyof typeof got.config], "gpt-4o");
    assert.equal(JSON.stringify(got).includes(OPENAI_ADMIN_KEY), false, "no answer carries the key");

    const deleted = await deleteIntegration("acme", "openai");
    assert.equal(deleted.success, true, JSON.stringify(deleted));
    assertFailure(await getIntegrationStatus("acme", "openai"), 404, "not_found");
    assertFailure(await deleteIntegration("acme", "openai"), 404, "not_found");
    assertFailure(await validateIntegration("acme", "openai"), 404, "not_found");
  });

  test("a key the provider refuses is a verdict: success false, status error, the spec's message and the fix", async () => {
    assert.ok((await setupIntegration("acme", "anthropic", { api_key: ANTHROPIC_STANDARD_KEY })).success);
    const standard = await validateIntegration("acme", "anthropic");
    assert.equal(standard.success, false);
    assert.ok("status" in standard && standard.status === "error", JSON.stringify(standard));
    assert.match(standard.error ?? "", /^Service account lacks required permissions/);
    assertSpecValidationDetails(standard.details);
    assert.match(standard.details.fix ?? "", /Admin API key/);
    const listed = await getIntegrations("acme");
    assert.ok(listed.success);
    const stored = listed.integrations.find((item) => item.provider === "anthropic");
    assertSpecIntegrationInfo(stored);
    assert.equal(stored?.error_message, standard.error);

    assert.ok((await actions.rotateCredentials("acme", "anthropic", { api_key: withMarker("bad", ANTHROPIC_STANDARD_KEY) })).success === false);
    assert.ok((await deleteIntegration("acme", "anthropic")).success);
    assert.ok((await setupIntegration("acme", "anthropic", { api_key: withMarker("bad", ANTHROPIC_STANDARD_KEY) })).success);
    const rejected = await validateIntegration("acme", "anthropic");
    assert.equal(rejected.success, false);
    assert.equal(rejected.error, "Anthropic API key is invalid or expired");
    assert.ok((await deleteIntegration("acme", "anthropic")).success);
  });

  test("the documented errors, in the service's words", async () => {
    assertFailure(await setupIntegration("acme", "openai", { api_key: "not-a-key" }), 400, "invalid_credential_format", "Invalid API key format for OpenAI");
    assert.ok((await setupIntegration("acme", "openai", { api_key: OPENAI_ADMIN_KEY })).success);
    assertFailure(await setupIntegration("acme", "openai", { api_key: OPENAI_ADMIN_KEY }), 409, "integration_exists", "Integration already exists for OpenAI");
    assertFailure(await setupIntegration("acme", "nosuch", { api_key: OPENAI_ADMIN_KEY }), 404, "unknown_provider");
    assertFailure(await setupIntegration("acme", "openai", { api_key: "sk-" + "a".repeat(70_000) }), 413, "payload_too_large");
    assertFailure(await setupIntegration("acme", "railway", { api_key: "x".repeat(30) }), 400, "provider_not_connectable");
    assertFailure(await setupIntegration("acme", "canva", { api_key: "x".repeat(30) }), 400, "bad_request", /oauth\/start/);
    const badConfig = assertFailure(await setupIntegration("acme", "gemini", { api_key: "AIzaSyTestKey0123456789abcdefghijklmnop" }, { project_id: "X" }), 400, "bad_request");
    assert.match(badConfig.error, /project_id/);
    assertFailure(await actions.getIntegrations("Not A Slug"), 400, "bad_request", /Organization slug/);
    // Another organization's key, a made-up key: refused with the same words whatever exists there.
    const globexKey = stack.createKey("globex");
    const asGlobex = createIntegrationActions({ baseUrl: stack.base, apiKey: globexKey });
    assertFailure(await asGlobex.getIntegrationStatus("acme", "openai"), 403, "forbidden", "API key is not valid for this organization");
    assertFailure(await asGlobex.getIntegrationStatus("acme", "nosuch"), 403, "forbidden");
    const madeUp = createIntegrationActions({ baseUrl: stack.base, apiKey: "ik_0123456789abcdef_" + "x".repeat(40) });
    assertFailure(await madeUp.getIntegrations("acme"), 401, "unauthenticated", "Invalid API key");
    assert.ok((await deleteIntegration("acme", "openai")).success);
  });
});

describe("the service's other operations", () => {
  test("disable, enable, rotate (validated first), change settings", async () => {
    assert.ok((await actions.setupIntegration("acme", "openai", { api_key: OPENAI_ADMIN_KEY })).success);
    const disabled = await actions.updateIntegration("acme", "openai", { enabled: false });
    assert.ok(disabled.success && disabled.integration.status === "disabled");
    assertFailure(await actions.validateIntegration("acme", "openai"), 409, "integration_disabled", /disabled/);
    const enabled = await actions.updateIntegration("acme", "openai", { enabled: true });
    assert.ok(enabled.success && enabled.integration.status === "pending");
    assertFailure(await actions.updateIntegration("acme", "openai", {}), 400, "bad_request");

    const refused = assertFailure(await actions.rotateCredentials("acme", "openai", { api_key: withMarker("bad") }), 422, "credential_rejected");
    assert.equal(refused.error, "OpenAI API key is invalid or expired");
    assertFailure(await actions.rotateCredentials("acme", "openai", { api_key: withMarker("ratelimit") }), 503, "provider_unavailable", "OpenAI rate limit exceeded during validation");
    const rotated = await actions.rotateCredentials("acme", "openai", { api_key: withMarker("rotated") }, { expires_at: "2035-01-31T00:00:00Z" });
    assert.ok(rotated.success, JSON.stringify(rotated));
    assert.equal(rotated.integration.status, "active");
    assert.equal(Date.parse(rotated.integration.expires_at ?? ""), Date.parse("2035-01-31T00:00:00Z"));
    assert.equal(rotated.integration.created_by, "ada@example.com", "X-User-Id is the acting user");

    const configured = await actions.updateIntegration("acme", "openai", { config: { default_model: "gpt-4.1" } });
    assert.ok(configured.success && configured.integration.status === "pending");
    assertFailure(await actions.updateIntegration("acme", "gemini", { enabled: true }), 404, "not_found");
    assert.ok((await actions.deleteIntegration("acme", "openai")).success);
  });

  test("the SaaS catalog and its toggles", async () => {
    const catalog = await actions.getSubscriptionProviders("acme");
    assert.ok(catalog.success, JSON.stringify(catalog));
    const canva = catalog.providers.find((entry) => entry.provider === "canva");
    assert.deepEqual([canva?.connection, canva?.enabled], ["oauth", false]);
    const toggled = await actions.setSubscriptionProvider("acme", "github", true);
    assert.ok(toggled.success && toggled.provider.enabled, JSON.stringify(toggled));
    const again = await actions.getSubscriptionProviders("acme");
    assert.ok(again.success && again.providers.find((entry) => entry.provider === "github")?.enabled);
    // The service names its own catalog, never the name it was sent.
    const unknown = assertFailure(await actions.setSubscriptionProvider("acme", "openai", true), 404, "unknown_provider", /^Unknown SaaS provider; SaaS providers: .*\bcanva\b/);
    assert.equal(unknown.error.includes("openai"), false, unknown.error);
  });

  test("AWS setup instructions: the org's external ID, made once", async () => {
    const first = await actions.getAwsSetupInstructions("acme", { export_bucket: "acme-costs", export_prefix: "cur" });
    assert.ok(first.success, JSON.stringify(first));
    const second = await actions.getAwsSetupInstructions("acme");
    assert.ok(second.success && second.instructions.external_id === first.instructions.external_id);
    assertFailure(await actions.getAwsSetupInstructions("acme", { export_bucket: "Not_A_Bucket" }), 400, "bad_request");
  });

  test("OAuth: start, consent, callback, then only the org's own key completes it, once", async () => {
    const started = await actions.startOAuth("acme", "canva");
    assert.ok(started.success, JSON.stringify(started));
    const notOAuth = await actions.startOAuth("acme", "openai");
    assert.ok(!notOAuth.success && notOAuth.http_status === 400 && /OAuth/.test(notOAuth.error), JSON.stringify(notOAuth));

    // The provider's consent page (the OAuth simulator) sends the browser to the callback with a code.
    const consent = await fetch(started.authorize_url, { redirect: "manual" });
    const callback = consent.headers.get("location");
    assert.ok(callback?.startsWith(`${stack.base}/api/v1/oauth/callback?`), String(callback));
    // Without OAUTH_FRONTEND_URL the callback answers JSON: a one-time completion code, never a token.
    const callbackAnswer = await fetch(callback ?? "", { redirect: "manual" });
    assert.equal(callbackAnswer.status, 200);
    const authorized = (await callbackAnswer.json()) as OAuthAuthorized;
    assert.deepEqual(
      [authorized.success, authorized.oauth, authorized.org_slug, authorized.provider],
      [true, "authorized", "acme", "canva"],
      JSON.stringify(authorized),
    );
    const code = authorized.completion_code;
    assert.match(code, /^[A-Za-z0-9_-]{43}$/);
    assert.ok(Date.parse(authorized.completion_expires_at) > Date.now());
    assert.equal("access_token" in authorized || "integration" in authorized, false, JSON.stringify(authorized));
    assertFailure(await actions.getIntegrationStatus("acme", "canva"), 404, "not_found"); // nothing stored yet

    // Another org's key: on its own org the code is unknown (the same words as a made-up code), and
    // on this org the key is refused; neither stores anything nor uses the code up.
    const globex = createIntegrationActions({ baseUrl: stack.base, apiKey: stack.createKey("globex") });
    const foreign = await globex.completeOAuth("globex", "canva", code);
    assertFailure(foreign, 400, "oauth_flow_rejected", "Unknown Canva completion code; start the connection again");
    const madeUp = await globex.completeOAuth("globex", "canva", "A".repeat(43));
    assert.equal(!madeUp.success && madeUp.error, !foreign.success && foreign.error, "another org's code reads as unknown");
    assertFailure(await globex.completeOAuth("acme", "canva", code), 403, "forbidden", "API key is not valid for this organization");
    assertFailure(await globex.getIntegrationStatus("globex", "canva"), 404, "not_found");
    assertFailure(await actions.getIntegrationStatus("acme", "canva"), 404, "not_found");
    // Another provider of the same org does not take it either; a code of the wrong shape is a plain 400.
    assertFailure(await actions.completeOAuth("acme", "github_app", code), 400, "oauth_flow_rejected", /^Unknown GitHub App completion code/);
    assertFailure(await actions.completeOAuth("acme", "canva", "no-such-code"), 400, "bad_request", /completion_code/);

    // The org's own key stores the tokens: validated, active.
    const completed = await actions.completeOAuth("acme", "canva", code);
    assert.ok(completed.success, JSON.stringify(completed));
    assert.deepEqual([completed.oauth, completed.org_slug, completed.provider, completed.status], ["connected", "acme", "canva", "active"]);
    assertSpecIntegrationInfo(completed.integration);
    assert.equal(completed.integration.status, "active");
    assert.equal(JSON.stringify(completed).includes("access_token"), false, "no answer carries a token");

    // Once only.
    assertFailure(
      await actions.completeOAuth("acme", "canva", code),
      400,
      "oauth_flow_rejected",
      "This OAuth completion code was already used; start the connection again",
    );
    const canva = await actions.getIntegrationStatus("acme", "canva");
    assert.ok(canva.success && canva.status === "active", JSON.stringify(canva));
    assert.equal(canva.integration_id, completed.integration.integration_id);
    assertSpecIntegrationInfo(canva.integration);
  });

  test("no answer at all: the failure says where it tried", async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const unreachable = createIntegrationActions({ baseUrl: closed, apiKey: orgKey });
    assertFailure(await unreachable.getIntegrations("acme"), 0, "network_error", `Unable to reach the integrations service at ${closed}`);
    const slow = createIntegrationActions({ baseUrl: stack.env["SIMULATOR"] ?? "", apiKey: orgKey, timeoutMs: 1 });
    const timedOut = await slow.getIntegrations("acme");
    assert.ok(!timedOut.success && ["timeout", "bad_response"].includes(timedOut.code), JSON.stringify(timedOut));
  });
});
