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

/** What the OAuth callback handed back in the URL: the old outcome, or the new one-time completion code. */
interface OAuthReturn {
  readonly completionCode: string | null;
  readonly outcome: string | null;
  readonly org: string | null;
  readonly provider: string | null;
  readonly status: string | null;
  readonly message: string | null;
}

interface Flash {
  readonly text: string;
  readonly bad: boolean;
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
  history.replaceState(null, "", window.location.pathname);
  const pending = takePendingOAuth();
  return {
    completionCode,
    outcome,
    org: params.get("org") ?? pending?.org ?? null,
    provider: params.get("provider") ?? pending?.provider ?? null,
    status: params.get("status"),
    message: params.get("message"),
  };
}

function actionsFor(session: Session): IntegrationActions {
  return createIntegrationActions({ baseUrl: session.apiBase, apiKey: () => loadSession()?.apiKey });
}

function providerName(provider: string | null): string {
  return PROVIDERS.find((form) => form.id === provider)?.display_name ?? provider ?? "the provider";
}

/** Finish an OAuth return for this session; answers where to go next. */
async function finishOAuth(session: Session, back: OAuthReturn): Promise<string> {
  const name = providerName(back.provider);
  const org = back.org && back.org === session.org ? back.org : session.org;
  const page = back.provider ? pageFor(back.provider) : "";
  if (back.completionCode) {
    if (!back.provider) {
      flash = { text: `Could not finish connecting: the page does not know which provider it was for.`, bad: true };
    } else {
      const answer = await actionsFor(session).completeOAuth(org, back.provider, back.completionCode);
      flash = answer.success
        ? { text: `${name} connected; its status is ${answer.integration.status}.`, bad: answer.integration.status !== "active" }
        : { text: `Could not finish connecting ${name}: ${answer.error}`, bad: true };
    }
  } else if (back.outcome === "connected") {
    const status = back.status ?? "connected";
    flash = { text: `${name} connected; its status is ${status}.${back.message ? ` ${back.message}` : ""}`, bad: status !== "active" };
  } else {
    flash = { text: `Could not connect ${name}: ${back.message ?? "the provider did not complete the authorization"}`, bad: true };
  }
  return pathOf(org, page);
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
    h("p", { class: "lead" }, oauthReturn ? `Enter the organization's key to finish connecting ${providerName(oauthReturn.provider)}.` : "Enter your organization's API key to see and change its integrations."),
    h("section", { class: "card" }, form, alert),
  );
  (org ? keyInput : orgInput).focus();
}

async function render(): Promise<void> {
  const main = document.getElementById("main");
  if (!main) return;
  const route = parseRoute(window.location.pathname);
  let session = loadSession();
  if (session && oauthReturn) {
    const back = oauthReturn;
    oauthReturn = null;
    replaceChildren(main, h("p", { "aria-busy": "true" }, `Finishing the connection of ${providerName(back.provider)}…`));
    return navigate(await finishOAuth(session, back), true);
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
}

oauthReturn = takeOAuthReturn();
window.addEventListener("popstate", () => void render());
void render();
