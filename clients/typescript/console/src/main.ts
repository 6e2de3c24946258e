/**
 * The settings console: the spec's pages at their paths, routed in the page.
 *
 *   /                                         the org key form (or on to the org's overview)
 *   /{org}/settings/integrations              overview
 *   /{org}/settings/integrations/cloud        GCP, AWS, Azure
 *   /{org}/settings/integrations/llm          OpenAI, Anthropic, Gemini
 *   /{org}/settings/integrations/subscriptions  the SaaS catalog
 *
 * The org key is asked once per browser session (session.ts). The API is this page's origin
 * unless the person points it elsewhere; calls to another origin go through CORS.
 */
import { createIntegrationActions, type IntegrationActions, type ServiceFailure } from "../../src/client.js";
import { PROVIDERS } from "../../src/generated/providers.js";
import { announce, h, labelled, replaceChildren, withProgress } from "./dom.js";
import { PAGE_TITLES, type PageContext, type PageName, categoryPage, overviewPage, pageFor, subscriptionsPage } from "./pages.js";
import { type Session, clearSession, loadSession, saveSession, takePendingOAuth } from "./session.js";

const ORG_SLUG = /^[a-z0-9][a-z0-9_-]{1,62}$/;
const PAGE_PATH = /^\/([a-z0-9][a-z0-9_-]{1,62})\/settings\/integrations(?:\/(cloud|llm|subscriptions))?\/?$/;

const NAV_LABELS: Record<PageName, string> = { "": "Overview", cloud: "Cloud", llm: "LLM", subscriptions: "Subscriptions" };

interface Route {
  readonly org: string | null;
  readonly page: PageName;
}

/**
 * What the OAuth callback's redirect carried: `oauth=authorized` with the org, the provider and a
 * one-time `completion_code` (nothing is stored until the org posts it with its key), or
 * `oauth=failed` with the service's `message` (and the org and provider when the flow was known).
 */
interface OAuthReturn {
  readonly authorized: boolean;
  readonly completionCode: string | null;
  readonly org: string | null;
  readonly provider: string | null;
  readonly message: string | null;
}

interface Flash {
  readonly text: string;
  readonly bad: boolean;
  /** The provider whose card the page brings into view (the one just connected). */
  readonly provider?: string;
}

let flash: Flash | null = null;
let oauthReturn: OAuthReturn | null = null;

function parseRoute(pathname: string): Route | null {
  if (pathname === "/" || pathname === "") return { org: null, page: "" };
  const match = PAGE_PATH.exec(pathname);
  return match ? { org: match[1] ?? null, page: (match[2] ?? "") as PageName } : null;
}

function pathOf(org: string, page: PageName): string {
  return `/${org}/settings/integrations${page ? `/${page}` : ""}`;
}

function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  void render();
}

/** Read the OAuth outcome from the URL once, and take it out of the address bar and history at once. */
function takeOAuthReturn(): OAuthReturn | null {
  const params = new URLSearchParams(window.location.search);
  const completionCode = params.get("completion_code");
  const outcome = params.get("oauth");
  if (!completionCode && !outcome) return null;
  // The code is single-use and useless without the org's key, but it stays out of history all the same.
  history.replaceState(null, "", window.location.pathname);
  // A failure before the flow was known (an unknown or expired state) names no provider: the flow
  // this tab started does.
  const pending = takePendingOAuth();
  return {
    authorized: outcome === "authorized",
    completionCode,
    org: params.get("org") ?? pending?.org ?? null,
    provider: params.get("provider") ?? pending?.provider ?? null,
    message: params.get("message"),
  };
}

/** Whether this session can finish the return: it was authorized for this session's org (or names none). */
function belongsTo(session: Session, back: OAuthReturn): boolean {
  return !back.org || back.org === session.org;
}

function actionsFor(session: Session): IntegrationActions {
  return createIntegrationActions({ baseUrl: session.apiBase, apiKey: () => loadSession()?.apiKey });
}

function providerName(provider: string | null): string {
  return PROVIDERS.find((form) => form.id === provider)?.display_name ?? provider ?? "the provider";
}

/**
 * Finish an OAuth return for this session; answers where to go next (the provider's page, where its
 * card shows the integration). An authorized flow is stored only now: the completion code goes, with
 * this org's key, to .../oauth/complete.
 */
async function finishOAuth(session: Session, back: OAuthReturn): Promise<string> {
  const name = providerName(back.provider);
  const page = back.provider ? pageFor(back.provider) : "";
  if (!back.authorized) {
    flash = { text: `Could not connect ${name}: ${back.message ?? "the provider did not complete the authorization"}`, bad: true };
  } else if (!belongsTo(session, back)) {
    // Posting it with this org's key would only be refused as unknown; say why instead.
    flash = { text: `Could not finish connecting ${name}: it was authorized for organization ${back.org}, not ${session.org}; nothing was stored.`, bad: true };
  } else if (!back.provider || !back.completionCode) {
    flash = { text: `Could not finish connecting ${name}: the address the callback sent back is incomplete; connect again.`, bad: true };
  } else {
    const answer = await actionsFor(session).completeOAuth(session.org, back.provider, back.completionCode);
    if (!answer.success) {
      flash = { text: `Could not finish connecting ${name}: ${answer.error}`, bad: true };
    } else {
      const { status, error_message: problem } = answer.integration;
      const text = `${name} connected; its status is ${status}.${status !== "active" && problem ? ` ${problem}` : ""}`;
      flash = { text, bad: status !== "active", provider: answer.provider };
    }
  }
  return pathOf(session.org, page);
}

function renderNav(session: Session | null, route: Route | null): void {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  if (!nav || !who) return;
  if (!session || !route?.org || route.org !== session.org) {
    nav.hidden = true;
    replaceChildren(who);
    return;
  }
  nav.hidden = false;
  replaceChildren(
    nav,
    ...(Object.keys(PAGE_TITLES) as PageName[]).map((page) => {
      const link = routedLink(pathOf(session.org, page), NAV_LABELS[page]);
      if (page === route.page) link.setAttribute("aria-current", "page");
      return link;
    }),
  );
  const signOut = h("button", { type: "button" }, "Sign out");
  signOut.addEventListener("click", () => {
    clearSession();
    navigate("/");
  });
  replaceChildren(who, h("span", {}, `Organization ${session.org}`), signOut);
}

function routedLink(path: string, text: string): HTMLAnchorElement {
  const link = h("a", { href: path }, text);
  link.addEventListener("click", (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(path);
  });
  return link;
}

/** The org key form: checked against the service before it is kept for the session. */
function keyForm(main: HTMLElement, org: string | null, reason: string | null): void {
  document.title = "Sign in · Integrations";
  const orgInput = h("input", { type: "text", name: "org", required: true, autocomplete: "organization", spellcheck: "false" });
  orgInput.value = org ?? "";
  const keyInput = h("input", { type: "password", name: "api_key", required: true, autocomplete: "off" });
  const apiInput = h("input", { type: "url", name: "api_base", required: true });
  apiInput.value = window.location.origin;
  const submit = h("button", { type: "submit", class: "primary" }, "Open settings");
  const alert = h("div", { class: "alert", role: "alert" }, reason ?? "");
  const form = h(
    "form",
    { "aria-label": "Organization and API key" },
    labelled("Organization", orgInput, "Its slug, e.g. acme"),
    labelled("Organization API key", keyInput, "Kept in this tab until you close it or sign out; never in the address bar"),
    labelled("Integrations API", apiInput, "This page's server, or the service's base URL"),
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const candidate: Session = { org: orgInput.value.trim(), apiKey: keyInput.value.trim(), apiBase: apiInput.value.trim().replace(/\/+$/, "") };
    keyInput.value = "";
    if (!ORG_SLUG.test(candidate.org)) {
      alert.textContent = "The organization is 2-63 lowercase letters, digits, '-' or '_'.";
      return;
    }
    void withProgress(submit, "Checking the key…", async () => {
      const answer = await createIntegrationActions({ baseUrl: candidate.apiBase, apiKey: candidate.apiKey }).getIntegrations(candidate.org);
      if (!answer.success) {
        alert.textContent = answer.error;
        return;
      }
      saveSession(candidate);
      const back = oauthReturn;
      oauthReturn = null;
      navigate(back ? await finishOAuth(candidate, back) : pathOf(candidate.org, parseRoute(window.location.pathname)?.page ?? ""));
    });
  });
  replaceChildren(
    main,
    h("h1", {}, "Integrations settings"),
    h(
      "p",
      { class: "lead" },
      oauthReturn?.authorized
        ? `Enter the key of ${oauthReturn.org ? `organization ${oauthReturn.org}` : "the organization"} to finish connecting ${providerName(oauthReturn.provider)}; nothing is stored until then.`
        : "Enter your organization's API key to see and change its integrations.",
    ),
    h("section", { class: "card" }, form, alert),
  );
  (org ? keyInput : orgInput).focus();
}

async function render(): Promise<void> {
  const main = document.getElementById("main");
  if (!main) return;
  const route = parseRoute(window.location.pathname);
  let session = loadSession();
  const back = oauthReturn;
  if (back && session && (!back.authorized || belongsTo(session, back))) {
    oauthReturn = null;
    replaceChildren(main, h("p", { "aria-busy": "true" }, `Finishing the connection of ${providerName(back.provider)}…`));
    return navigate(await finishOAuth(session, back), true);
  }
  if (back?.authorized) {
    // Authorized for an org this tab is not signed in to: only that org's key can finish it.
    renderNav(null, null);
    return keyForm(main, back.org, null);
  }
  renderNav(session, route);
  if (!route) {
    document.title = "Not found · Integrations";
    replaceChildren(main, h("h1", {}, "No such page"), h("p", {}, routedLink(session ? pathOf(session.org, "") : "/", "Go to the overview")));
    return;
  }
  if (session && route.org && route.org !== session.org) session = null;
  if (!session) return keyForm(main, route.org, null);
  if (!route.org) return navigate(pathOf(session.org, ""), true);
  const title = PAGE_TITLES[route.page];
  document.title = `${title} · ${session.org} · Integrations`;
  const notice = flash ? h("p", { class: flash.bad ? "notice bad" : "notice", role: "status" }, flash.text) : null;
  if (flash) announce(flash.text);
  const shown = flash?.provider;
  flash = null;
  replaceChildren(main, h("h1", {}, title), notice);
  const current = session;
  const context: PageContext = {
    session: current,
    actions: actionsFor(current),
    link: (page, text) => routedLink(pathOf(current.org, page), text),
    signedOut: (failure: ServiceFailure) => {
      clearSession();
      renderNav(null, route);
      keyForm(main, current.org, `The key was refused: ${failure.error}`);
    },
  };
  main.focus();
  if (route.page === "") await overviewPage(context, main);
  else if (route.page === "subscriptions") await subscriptionsPage(context, main);
  else await categoryPage(context, main, route.page);
  // Back from a connection: bring that provider's card, with its new state, into view.
  if (shown) main.querySelector(`section[data-provider="${CSS.escape(shown)}"]`)?.scrollIntoView({ block: "center" });
}

oauthReturn = takeOAuthReturn();
window.addEventListener("popstate", () => void render());
void render();
