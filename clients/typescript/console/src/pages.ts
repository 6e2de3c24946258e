/** The spec's pages: the overview, Cloud, LLM and Subscriptions. */
import type { Integration, ServiceFailure, ServiceValidationDetails, SubscriptionProvider } from "../../src/client.js";
import { PROVIDERS, type ProviderForm } from "../../src/generated/providers.js";
import { type CardContext, integrationCard, statusBadge } from "./card.js";
import { announce, expiryText, formatTime, h, replaceChildren, uniqueId } from "./dom.js";

export interface PageContext extends CardContext {
  /** A link to another page of this org, routed in the page. */
  link(page: PageName, text: string): HTMLAnchorElement;
  /** The service refused the org key (revoked, wrong): back to the key form. */
  signedOut(failure: ServiceFailure): void;
}

export type PageName = "" | "cloud" | "llm" | "subscriptions";

export const PAGE_TITLES: Record<PageName, string> = {
  "": "Overview",
  cloud: "Cloud providers",
  llm: "LLM providers",
  subscriptions: "SaaS subscriptions",
};

const SAAS_GROUPS = { ai: "AI", design: "Design", productivity: "Productivity", development: "Development" } as const;

export function pageFor(provider: string): PageName {
  const category = PROVIDERS.find((form) => form.id === provider)?.category;
  return category === "saas" ? "subscriptions" : category === "cloud" ? "cloud" : category === "llm" ? "llm" : "";
}

function displayName(provider: string): string {
  return PROVIDERS.find((form) => form.id === provider)?.display_name ?? provider;
}

function loadFailed(context: PageContext, main: HTMLElement, failure: ServiceFailure): void {
  if (failure.http_status === 401 || failure.http_status === 403) return context.signedOut(failure);
  main.append(h("div", { class: "alert", role: "alert" }, `Could not load the integrations: ${failure.error}`));
}

function byProvider(integrations: readonly Integration[]): Map<string, Integration> {
  return new Map(integrations.map((integration) => [integration.provider, integration]));
}

export async function overviewPage(context: PageContext, main: HTMLElement): Promise<void> {
  const loading = h("p", { class: "muted" }, "Loading integrations…");
  main.append(h("p", { class: "lead" }, "Every connected provider of this organization, with what needs attention."), loading);
  const answer = await context.actions.getIntegrations(context.session.org);
  loading.remove();
  if (!answer.success) return loadFailed(context, main, answer);
  const integrations = answer.integrations;
  const attention = integrations.filter((item) => item.status !== "active" || expiryText(item.expires_at).warn).length;
  main.append(
    h(
      "p",
      {},
      integrations.length === 0
        ? "No integrations yet. "
        : `${integrations.length} connected, ${attention} need${attention === 1 ? "s" : ""} attention. `,
      "Connect providers on ",
      context.link("cloud", "Cloud"),
      ", ",
      context.link("llm", "LLM"),
      " and ",
      context.link("subscriptions", "Subscriptions"),
      ".",
    ),
  );
  if (integrations.length > 0) {
    const rows = integrations.map((item) => {
      const details = item.details as ServiceValidationDetails | undefined;
      const expiry = expiryText(item.expires_at);
      const problem = item.status === "error" || item.status === "expired" ? item.error_message : undefined;
      return h(
        "tr",
        { "data-provider": item.provider },
        h("th", { scope: "row" }, displayName(item.provider)),
        h("td", {}, statusBadge(item.status)),
        h("td", {}, formatTime(item.validated_at)),
        h(
          "td",
          {},
          problem ? h("div", {}, problem) : h("span", { class: "muted" }, "—"),
          problem && details?.fix ? h("div", { class: "fix" }, h("strong", {}, "How to fix: "), details.fix) : null,
        ),
        h("td", { class: expiry.warn ? "warn" : undefined }, expiry.text || "—"),
        h("td", {}, context.link(pageFor(item.provider), `Manage ${displayName(item.provider)}`)),
      );
    });
    main.append(
      h(
        "table",
        { id: "overview" },
        h("caption", {}, "Integrations and their last validation"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ...["Provider", "Status", "Last validated", "Problem and fix", "Credential expiry", "Manage"].map((title) =>
              h("th", { scope: "col" }, title),
            ),
          ),
        ),
        h("tbody", {}, ...rows),
      ),
    );
  }
  performance.mark("overview-rendered");
}

export async function categoryPage(context: PageContext, main: HTMLElement, category: "cloud" | "llm"): Promise<void> {
  const forms = PROVIDERS.filter((form) => form.category === category);
  main.append(
    h(
      "p",
      { class: "lead" },
      category === "cloud"
        ? "Connect a cloud account so its billing export feeds the cost pipelines."
        : "Connect an LLM provider with a key that can read its usage and costs.",
    ),
  );
  const answer = await context.actions.getIntegrations(context.session.org);
  if (!answer.success) return loadFailed(context, main, answer);
  const current = byProvider(answer.integrations);
  main.append(h("div", { class: "grid" }, ...forms.map((form) => integrationCard(context, form, current.get(form.id)))));
}

/** The "we pay for it" switch: shows its progress while the service saves it, then the outcome or the error. */
function subscriptionSwitch(
  context: PageContext,
  entry: SubscriptionProvider,
  onResult: (failure: ServiceFailure | null) => void,
): HTMLElement {
  const id = uniqueId(`subscribed-${entry.provider}`);
  const input = h("input", { type: "checkbox", role: "switch", id, "aria-label": `We pay for ${entry.display_name}` });
  input.checked = entry.enabled;
  const text = h("span", {}, "We pay for it");
  const label = h("label", { for: id, class: "switch" }, input, text);
  input.addEventListener("change", () => {
    const wanted = input.checked;
    input.disabled = true;
    label.setAttribute("aria-busy", "true");
    text.textContent = "Saving…";
    announce("Saving…");
    void context.actions.setSubscriptionProvider(context.session.org, entry.provider, wanted).then((answer) => {
      input.disabled = false;
      label.removeAttribute("aria-busy");
      text.textContent = "We pay for it";
      if (!answer.success) {
        input.checked = !wanted;
        return onResult(answer);
      }
      onResult(null);
      announce(`${entry.display_name}: ${wanted ? "marked as paid for" : "no longer marked as paid for"}.`);
    });
  });
  return label;
}

export async function subscriptionsPage(context: PageContext, main: HTMLElement): Promise<void> {
  main.append(h("p", { class: "lead" }, "Say which tools the organization pays for, and connect those with an admin API to read seats and spend."));
  const org = context.session.org;
  const [catalog, listed] = await Promise.all([context.actions.getSubscriptionProviders(org), context.actions.getIntegrations(org)]);
  if (!catalog.success) return loadFailed(context, main, catalog);
  if (!listed.success) return loadFailed(context, main, listed);
  const current = byProvider(listed.integrations);
  const forms = new Map(PROVIDERS.map((form) => [form.id, form]));
  for (const [group, title] of Object.entries(SAAS_GROUPS)) {
    const entries = catalog.providers.filter((entry) => entry.saas_category === group);
    if (entries.length === 0) continue;
    const headingId = uniqueId(`group-${group}`);
    const cards = entries.map((entry) => {
      const form = forms.get(entry.provider) as ProviderForm | undefined;
      const alert = h("div", { class: "alert", role: "alert" });
      const toggle = subscriptionSwitch(context, entry, (failure) => replaceChildren(alert, failure?.error));
      if (!form || entry.connection === "toggle") {
        return h(
          "section",
          { class: "card", "aria-label": entry.display_name, "data-provider": entry.provider },
          h("header", {}, h("h3", {}, entry.display_name), toggle),
          h("p", { class: "muted" }, "No admin API: nothing to connect, only whether you pay for it."),
          alert,
        );
      }
      const card = integrationCard(context, form, current.get(entry.provider), { headerExtras: [toggle], heading: "h3" });
      card.append(alert);
      return card;
    });
    main.append(h("section", { class: "group", "aria-labelledby": headingId }, h("h2", { id: headingId }, title), h("div", { class: "grid" }, ...cards)));
  }
}

