/**
 * The settings console in a real browser: Debian's Chromium driven by playwright-core, against the
 * real service. The pages are opened on a second origin (http://localhost:PORT) while the API is at
 * http://127.0.0.1:PORT with CORS_ALLOWED_ORIGINS naming the pages' origin, so every call crosses
 * origins (preflights included) as it would from a frontend of its own.
 *
 * The journey: connect OpenAI with an admin key (active); a standard Anthropic key (error, with the
 * fix); disable, enable, validate; rotate; toggle a SaaS tool; connect Canva through its consent
 * page, the callback and the console's completion with the org's key, and come back connected; a
 * completion code the service never issued, refused in words; delete. On the way: a screenshot of every page (under
 * test-output/console/, or $CONSOLE_TEST_OUTPUT), an axe-core scan of every page (no serious or
 * critical violation), and a check that no secret typed into a form is left in the DOM,
 * localStorage, the URL or the service's log. It reports the page weight (JS and CSS bytes) and the
 * time from navigation to the overview rendered.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";

import { type Browser, type Page, chromium } from "playwright-core";

import { createIntegrationActions } from "../src/client.js";
import { freePort, PACKAGE_ROOT, type Stack, startStack } from "./stack.js";

const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
// Headless, and off the network: no component updates, sync, field trials or first-run fetches.
const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
const OUTPUT = process.env["CONSOLE_TEST_OUTPUT"] ?? path.join(PACKAGE_ROOT, "test-output", "console");
const SITE = path.join(PACKAGE_ROOT, "dist", "site");

const OPENAI_ADMIN_KEY = "sk-admin-ConsoleKeyAbcdefghijklmnop0123";
const OPENAI_ROTATED_KEY = "sk-admin-RotatedConsoleKeyAbcdefghij0123";
const ANTHROPIC_STANDARD_KEY = "sk-ant-api03-ConsoleKeyAbcdefghijklmnop0123";
const GEMINI_KEY = "AIzaSyConsoleKey0123456789abcdefghijklm";

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: unknown[] }[];
}

let stack: Stack;
let browser: Browser;
let page: Page;
let origin: string;
let orgKey: string;
const typedSecrets: string[] = [];
const requestedUrls: string[] = [];
const corsAnswers: string[] = [];
/** Script errors and the browser console's errors, with the URL the browser names (a failed resource's). */
const pageErrors: { text: string; url: string }[] = [];

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Debian's chromium is not at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  }
  const port = await freePort();
  origin = `http://localhost:${port}`;
  stack = await startStack({ CORS_ALLOWED_ORIGINS: origin, OAUTH_FRONTEND_URL: `${origin}/` }, port);
  orgKey = stack.createKey("acme");
  await mkdir(OUTPUT, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.on("request", (request) => requestedUrls.push(request.url()));
  page.on("response", async (response) => {
    const allowed = (await response.allHeaders())["access-control-allow-origin"];
    if (allowed) corsAnswers.push(`${allowed} ${response.url()}`);
  });
  page.on("pageerror", (error) => pageErrors.push({ text: error.message, url: "" }));
  page.on("console", (message) => {
    if (message.type() === "error") pageErrors.push({ text: message.text(), url: message.location().url });
  });
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

async function scanAndShoot(name: string): Promise<void> {
  await page.screenshot({ path: path.join(OUTPUT, `${name}.png`), fullPage: true });
  const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(context: Document): Promise<{ violations: AxeViolation[] }> } }).axe;
    return (await axe.run(document)).violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({ target: n.target })) }));
  });
  const serious = violations.filter((violation) => violation.impact === "serious" || violation.impact === "critical");
  assert.deepEqual(serious, [], `${name}: axe found serious violations`);
}

function card(provider: string) {
  return page.locator(`section[data-provider="${provider}"]`);
}

async function nav(name: string): Promise<void> {
  await page.getByRole("navigation", { name: "Settings pages" }).getByRole("link", { name, exact: true }).click();
  await page.locator("main h1").waitFor();
}

async function typeSecret(locator: ReturnType<Page["locator"]>, secret: string): Promise<void> {
  typedSecrets.push(secret);
  await locator.fill(secret);
}

test("the console: connect, check, fix, rotate, toggle, OAuth and remove, across origins", async () => {
  // The org key, once per browser session.
  await page.goto(`${origin}/`);
  await page.getByRole("heading", { name: "Integrations settings" }).waitFor();
  await scanAndShoot("0-key-form");
  await page.getByLabel("Organization", { exact: true }).fill("acme");
  await typeSecret(page.getByLabel("Organization API key"), orgKey);
  await page.getByLabel("Integrations API").fill(stack.base);
  await page.getByRole("button", { name: "Open settings" }).click();
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  assert.equal(new URL(page.url()).pathname, "/acme/settings/integrations");
  assert.equal(await page.getByLabel("Organization API key").count(), 0);

  // OpenAI with an admin key: active.
  await nav("LLM");
  await typeSecret(card("openai").getByLabel("API key"), OPENAI_ADMIN_KEY);
  await card("openai").getByRole("button", { name: "Connect and validate" }).click();
  await card("openai").locator(".badge.active").waitFor();
  await card("openai").getByText("OpenAI is active.").waitFor();

  // A standard Anthropic key logs in but cannot read costs: error, the spec's message and the fix.
  await typeSecret(card("anthropic").getByLabel("API key"), ANTHROPIC_STANDARD_KEY);
  await card("anthropic").getByRole("button", { name: "Connect and validate" }).click();
  await card("anthropic").locator(".badge.error").waitFor();
  await card("anthropic").locator(".alert").getByText(/^Service account lacks required permissions/).waitFor();
  await card("anthropic").getByText(/^Validation failed: Anthropic is error/).waitFor();
  await card("anthropic").locator(".fix").getByText(/Admin API key/).waitFor();
  assert.equal(await card("anthropic").getByLabel("API key").first().inputValue(), "", "the secret field is cleared");

  // Disable, enable (pending until validated), validate.
  await card("openai").getByRole("button", { name: "Disable" }).click();
  await card("openai").locator(".badge.disabled").waitFor();
  assert.equal(await card("openai").getByRole("button", { name: "Validate" }).isDisabled(), true);
  await card("openai").getByRole("button", { name: "Enable" }).click();
  await card("openai").locator(".badge.pending").waitFor();
  await card("openai").getByRole("button", { name: "Validate" }).click();
  await card("openai").locator(".badge.active").waitFor();

  // Rotate: the new key is validated before it replaces the old one.
  await card("openai").getByText("Rotate the credential").click();
  await typeSecret(card("openai").getByLabel("API key"), OPENAI_ROTATED_KEY);
  await card("openai").getByRole("button", { name: "Rotate", exact: true }).click();
  await card("openai").getByText(/^Rotated:/).waitFor();
  await card("openai").locator(".badge.active").waitFor();
  await scanAndShoot("3-llm");

  // Cloud: the AWS setup instructions carry the org's external ID.
  await nav("Cloud");
  await card("aws").getByRole("button", { name: "Show the setup instructions" }).click();
  await card("aws").getByText("External ID", { exact: true }).waitFor();
  await scanAndShoot("2-cloud");

  // SaaS: a subscription toggle shows its progress and its outcome, and stays put across a reload.
  await nav("Subscriptions");
  const github = page.getByRole("switch", { name: "We pay for GitHub", exact: true });
  const githubToggle = `${stack.base}/api/v1/subscriptions/acme/providers/github`;
  // No answer at all (the request dropped on its way): the switch goes back and says why, in words.
  await page.route(githubToggle, (route) => route.abort("connectionrefused"), { times: 1 });
  const droppedLogged = page.waitForEvent("console", (message) => message.text().includes("net::ERR_CONNECTION_REFUSED"));
  await github.click(); // not check(): the switch may already be back off when check() looks
  await card("github").locator(".alert").getByText(`Unable to reach the integrations service at ${stack.base}`).waitFor();
  assert.equal(await github.isChecked(), false);
  await droppedLogged; // the browser logs the dropped request: the one error this step allows
  const expectedDrop = { text: "Failed to load resource: net::ERR_CONNECTION_REFUSED", url: githubToggle };
  assert.deepEqual(pageErrors.splice(0), [expectedDrop]);
  // Then it works: held at the browser until the card shows its progress, then on to the service.
  await page.route(githubToggle, async (route) => {
    await card("github").getByText("Saving…").waitFor();
    assert.equal(await github.isDisabled(), true);
    await route.continue();
  }, { times: 1 });
  const toggled = page.waitForResponse((response) => response.url() === githubToggle && response.request().method() === "PUT");
  await github.check();
  assert.equal((await toggled).status(), 200);
  await page.locator("#announcer").getByText("GitHub: marked as paid for.").waitFor();
  await card("github").getByText("We pay for it").waitFor();
  assert.equal(await card("github").locator(".alert").last().textContent(), "", "the earlier failure is no longer shown");
  await page.reload();
  await page.getByRole("switch", { name: "We pay for GitHub", exact: true }).waitFor();
  assert.equal(await page.getByRole("switch", { name: "We pay for GitHub", exact: true }).isChecked(), true);

  // Canva: the provider's consent page (the OAuth simulator), the service's callback, then back to the
  // console (OAUTH_FRONTEND_URL) with a one-time completion code, which the console posts with the org's
  // key: only that stores the tokens.
  const completeUrl = (provider: string) => `${stack.base}/api/v1/integrations/acme/${provider}/oauth/complete`;
  const landed = page.waitForRequest((request) => request.isNavigationRequest() && request.url().startsWith(`${origin}/?`));
  const completion = page.waitForRequest((request) => request.method() === "POST" && request.url() === completeUrl("canva"));
  await card("canva").getByRole("button", { name: "Connect with Canva" }).click();
  const returned = new URL((await landed).url()).searchParams;
  assert.deepEqual([...returned.keys()].sort(), ["completion_code", "oauth", "org", "provider"], "the callback hands over no token");
  assert.deepEqual([returned.get("oauth"), returned.get("org"), returned.get("provider")], ["authorized", "acme", "canva"]);
  const code = returned.get("completion_code") ?? "";
  assert.match(code, /^[A-Za-z0-9_-]{43}$/);
  const posted = await completion;
  assert.equal(await posted.headerValue("x-api-key"), orgKey, "completed with the org's own key");
  assert.deepEqual(posted.postDataJSON(), { completion_code: code });
  const connected = await posted.response();
  assert.equal(connected?.status(), 200);
  assert.deepEqual(
    await connected?.json().then((body: Record<string, unknown>) => [body["oauth"], body["status"]]),
    ["connected", "active"],
  );
  await page.locator("main .notice").getByText("Canva connected; its status is active.").waitFor();
  assert.equal(new URL(page.url()).pathname, "/acme/settings/integrations/subscriptions");
  assert.equal(new URL(page.url()).search, "", "the outcome is taken out of the address bar");
  assert.equal(page.url().includes(code), false);
  await card("canva").locator(".badge.active").waitFor();
  await scanAndShoot("4-subscriptions");
  assert.deepEqual(pageErrors.splice(0), [], "no script or network error so far");

  // Authorized for another org than this tab's: the console asks for that org's key and posts nothing.
  const madeUpCode = "M".repeat(43); // the shape of a real code; the service never issued it
  const requestsBefore = requestedUrls.length;
  await page.goto(`${origin}/?oauth=authorized&org=globex&provider=canva&completion_code=${madeUpCode}`);
  await page.getByText("Enter the key of organization globex to finish connecting Canva; nothing is stored until then.").waitFor();
  assert.equal(await page.getByLabel("Organization", { exact: true }).inputValue(), "globex");
  assert.equal(new URL(page.url()).search, "");
  assert.deepEqual(requestedUrls.slice(requestsBefore).filter((url) => url.startsWith(stack.base)), [], "no call to the API");

  // A completion code the service never issued: posted, refused (400), and the refusal shown in words.
  const refusal = page.waitForResponse((response) => response.url() === completeUrl("github_app") && response.request().method() === "POST");
  await page.goto(`${origin}/?oauth=authorized&org=acme&provider=github_app&completion_code=${madeUpCode}`);
  const refused = await refusal;
  assert.equal(refused.status(), 400);
  assert.equal(((await refused.json()) as { code: string }).code, "oauth_flow_rejected");
  await page
    .locator("main .notice.bad")
    .getByText("Could not finish connecting GitHub App: Unknown GitHub App completion code; start the connection again")
    .waitFor();
  assert.equal(new URL(page.url()).search, "");
  assert.equal(new URL(page.url()).pathname, "/acme/settings/integrations/subscriptions");
  await card("github_app").getByRole("button", { name: "Connect with GitHub App" }).waitFor();
  // The browser logs that one expected 400 on its console; it is the only error allowed.
  const expectedRefusal = { text: "Failed to load resource: the server responded with a status of 400 (BAD REQUEST)", url: completeUrl("github_app") };
  assert.deepEqual(pageErrors.splice(0), [expectedRefusal]);

  // Delete the Anthropic integration and its credential.
  await nav("LLM");
  await card("anthropic").getByRole("button", { name: "Delete…" }).click();
  await card("anthropic").getByRole("button", { name: "Delete Anthropic and its credential" }).click();
  await card("anthropic").getByText("Anthropic was removed with its credential.").waitFor();
  await card("anthropic").locator(".badge.none").getByText("not connected").waitFor();

  // A key that runs out in 10 days, set up from a server side with the typed client: the overview warns.
  const expiresAt = new Date(Date.now() + 10 * 24 * 3600 * 1000 - 60_000).toISOString().replace(/\.\d+Z$/, "Z");
  const serverSide = createIntegrationActions({ baseUrl: stack.base, apiKey: orgKey });
  const gemini = await serverSide.setupIntegration("acme", "gemini", { api_key: GEMINI_KEY });
  assert.ok(gemini.success && (await serverSide.updateIntegration("acme", "gemini", { expires_at: expiresAt })).success);

  // The overview: every integration with its status, last validation, problem and fix, expiry.
  await nav("Overview");
  const rows = page.locator("#overview tbody tr");
  await rows.first().waitFor();
  assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-provider")).sort()), ["canva", "gemini", "openai"]);
  await page.locator('#overview tr[data-provider="gemini"] td.warn').getByText(/^Expires in 10 days/).waitFor();
  await page.getByText("3 connected, 1 needs attention.").waitFor();
  await scanAndShoot("1-overview");

  // Every API call crossed origins: the browser sent preflights, and the answers named the pages' origin.
  assert.match(stack.log(), /"requestMethod": "OPTIONS", "requestUrl": "\/api\/v1\/integrations\/acme\/openai\/setup"/);
  const apiAnswers = corsAnswers.filter((answer) => answer.includes(` ${stack.base}/`));
  assert.ok(apiAnswers.length > 10 && apiAnswers.every((answer) => answer.startsWith(`${origin} ${stack.base}/api/`)), apiAnswers.join("\n"));
  assert.deepEqual(pageErrors, []);
});

test("no secret typed into a form is left in the DOM, localStorage, the URL or the service's log", async () => {
  const providerSecrets = typedSecrets.filter((secret) => secret !== orgKey);
  assert.equal(providerSecrets.length, 3);
  const left = await page.evaluate(() => ({
    dom: document.documentElement.outerHTML,
    values: Array.from(document.querySelectorAll("input, textarea"), (field) => (field as HTMLInputElement).value).join("\n"),
    localStorage: JSON.stringify({ ...localStorage }),
    sessionStorage: JSON.stringify({ ...sessionStorage }),
    url: location.href,
  }));
  const log = stack.log();
  for (const secret of typedSecrets) {
    for (const [where, text] of Object.entries({ ...left, log, requests: requestedUrls.join("\n") })) {
      if (where === "sessionStorage" && secret === orgKey) continue; // where the org key is kept, by design
      assert.equal(text.includes(secret), false, `a typed secret (${secret.slice(0, 8)}…) is in ${where}`);
    }
  }
  assert.ok(left.sessionStorage.includes(orgKey), "the org key is kept for this tab's session");
});

test("page weight and the time from navigation to the overview rendered", async () => {
  const script = readFileSync(path.join(SITE, "console.js"));
  const style = readFileSync(path.join(SITE, "console.css"));
  const html = readFileSync(path.join(SITE, "index.html"));
  const timings: number[] = [];
  for (let round = 0; round < 5; round += 1) {
    await page.goto(`${origin}/acme/settings/integrations`);
    await page.locator("#overview").waitFor();
    timings.push(await page.evaluate(() => performance.getEntriesByName("overview-rendered")[0]?.startTime ?? Number.NaN));
  }
  timings.sort((a, b) => a - b);
  const metrics = {
    js_bytes: script.length,
    css_bytes: style.length,
    html_bytes: html.length,
    js_css_gzip_bytes: gzipSync(script).length + gzipSync(style).length,
    overview_rendered_ms: { median: timings[2], min: timings[0], max: timings[4], runs: timings.length },
  };
  await writeFile(path.join(OUTPUT, "metrics.json"), JSON.stringify(metrics, null, 2));
  console.log(`console metrics: ${JSON.stringify(metrics)} (screenshots in ${OUTPUT})`);
  assert.ok(Number.isFinite(metrics.overview_rendered_ms.median));
  assert.ok(script.length + style.length < 100_000, "the console stays small");
});
