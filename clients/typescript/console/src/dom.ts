/** A few DOM helpers. Text always goes in as text (never HTML): messages come from the service. */

export type Child = Node | string | null | undefined | false;
type Attributes = Record<string, string | boolean | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? "" : value);
  }
  append(element, ...children);
  return element;
}

export function append(parent: Element, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

export function replaceChildren(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, ...children);
}

/** A labelled input with its hint: the label names it, the hint describes it (aria-describedby). */
export function labelled(label: string, input: HTMLInputElement | HTMLTextAreaElement, hint?: string): HTMLElement {
  if (!input.id) input.id = uniqueId(input.name || "field");
  const hintNode = hint ? h("small", { id: uniqueId(`${input.id}-hint`) }, hint) : null;
  if (hintNode) input.setAttribute("aria-describedby", hintNode.id);
  return h("div", { class: "field" }, h("label", { for: input.id }, label), hintNode, input);
}

let nextId = 0;
/** A page-unique id for aria-labelledby / label-for pairs. */
export function uniqueId(prefix: string): string {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/** Tell screen readers what just happened (the page's one polite live region). */
export function announce(text: string): void {
  const region = document.getElementById("announcer");
  if (region) region.textContent = text;
}

/** Run `work` with `button` disabled and showing `busyLabel`; its label comes back afterwards. */
export async function withProgress<T>(button: HTMLButtonElement, busyLabel: string, work: () => Promise<T>): Promise<T> {
  const label = button.textContent ?? "";
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = busyLabel;
  announce(busyLabel);
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.textContent = label;
  }
}

export function formatTime(iso: string | undefined): string {
  if (!iso) return "never";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

const DAY_MS = 24 * 60 * 60 * 1000;
export const EXPIRY_WARNING_DAYS = 30;

/** "Expires in 6 days" within the warning window, "Expired …" after, the date otherwise; "" without one. */
export function expiryText(iso: string | undefined, now = Date.now()): { text: string; warn: boolean } {
  if (!iso) return { text: "", warn: false };
  const at = new Date(iso).getTime();
  const days = Math.ceil((at - now) / DAY_MS);
  if (at <= now) return { text: `Expired ${formatTime(iso)}`, warn: true };
  if (days <= EXPIRY_WARNING_DAYS) return { text: `Expires in ${days} day${days === 1 ? "" : "s"} (${formatTime(iso)})`, warn: true };
  return { text: `Expires ${formatTime(iso)}`, warn: false };
}

/** "billing_dataset_id" -> "Billing dataset ID". */
export function humanize(name: string): string {
  const words = name.split("_").map((word) => (word === "id" ? "ID" : word === "gid" ? "GID" : word));
  const first = words[0] ?? "";
  return [first.charAt(0).toUpperCase() + first.slice(1), ...words.slice(1)].join(" ");
}
