/**
 * One provider's card: its state (status, last validation, error and fix, expiry) and what a person
 * can do with it: connect (setup, then validate), validate, disable / enable, rotate, change settings,
 * delete; for OAuth tools, connect through the provider's consent page. Secret fields are write-only:
 * they are never filled from an answer and are cleared after every submit, whatever its outcome.
 */
import type { Integration, IntegrationActions, ServiceFailure, ServiceValidationDetails } from "../../src/client.js";
import type { ProviderForm } from "../../src/generated/providers.js";
import { type Child, announce, expiryText, formatTime, h, humanize, labelled, replaceChildren, uniqueId, withProgress } from "./dom.js";
import { rememberOAuth, type Session } from "./session.js";

export interface CardContext {
  readonly session: Session;
  readonly actions: IntegrationActions;
}

interface FieldUi {
  readonly label: string;
  readonly secret: boolean;
  readonly multiline?: boolean;
  readonly hint?: string;
  readonly required?: boolean;
}

// How each CredentialInput field is asked for; the registry says which fields a provider takes.
const CREDENTIAL_UI: Record<string, FieldUi> = {
  api_key: { label: "API key", secret: true },
  service_account_json: { label: "Service account key (JSON)", secret: true, multiline: true, hint: "Paste the whole key file" },
  role_arn: { label: "Role ARN", secret: false, hint: "The role you created from the setup instructions" },
  tenant_id: { label: "Directory (tenant) ID", secret: false, required: true },
  client_id: { label: "Application (client) ID", secret: false, required: true },
  client_secret: { label: "Client secret", secret: true, hint: "The secret's Value (or a client certificate below)" },
  client_certificate: { label: "Client certificate", secret: true, multiline: true, hint: "PEM with the certificate and its private key" },
  secret_id: { label: "Secret ID", secret: false, hint: "Optional: the secret whose expiry is read" },
};

type Input = HTMLInputElement | HTMLTextAreaElement;

interface FieldSet {
  readonly nodes: HTMLElement[];
  values(): Record<string, string>;
  clear(): void;
}

function field(name: string, ui: FieldUi, required: boolean, value = "", example?: string): { node: HTMLElement; input: Input } {
  const common = { name, autocomplete: "off", spellcheck: "false", required: required || undefined };
  const input: Input = ui.multiline
    ? h("textarea", common)
    : h("input", { ...common, type: ui.secret ? "password" : "text", placeholder: ui.secret ? undefined : example });
  if (!ui.secret) input.value = value;
  const hint = ui.hint ?? (ui.secret && example ? `Looks like ${example.slice(0, 12)}…` : undefined);
  return { node: labelled(`${ui.label}${required ? "" : " (optional)"}`, input, hint), input };
}

function fieldSet(entries: { name: string; ui: FieldUi; required: boolean; value?: string; example?: string }[]): FieldSet {
  const built = entries.map((entry) => ({ entry, ...field(entry.name, entry.ui, entry.required, entry.value, entry.example) }));
  return {
    nodes: built.map((item) => item.node),
    values() {
      const values: Record<string, string> = {};
      for (const { entry, input } of built) {
        const value = entry.name === "service_account_json" || entry.ui.multiline ? input.value : input.value.trim();
        if (value) values[entry.name] = value;
      }
      return values;
    },
    clear() {
      for (const { entry, input } of built) if (entry.ui.secret) input.value = "";
    },
  };
}

function credentialFields(form: ProviderForm): FieldSet {
  const credential = form.credential;
  if (!credential) return fieldSet([]);
  return fieldSet(
    credential.fields.map((name) => {
      const ui = CREDENTIAL_UI[name] ?? { label: humanize(name), secret: name === credential.secret_field };
      const single = credential.fields.length === 1;
      return { name, ui, required: single || ui.required === true, ...(credential.example ? { example: credential.example } : {}) };
    }),
  );
}

function configFields(form: ProviderForm, current: Record<string, unknown> = {}): FieldSet {
  return fieldSet(
    form.config_fields.map((config) => {
      const value = current[config.name];
      return {
        name: config.name,
        ui: { label: humanize(config.name), secret: false, hint: config.description },
        required: config.required,
        ...(typeof value === "string" ? { value } : {}),
        ...(config.example ? { example: config.example } : {}),
      };
    }),
  );
}

export function statusBadge(status: string | undefined): HTMLElement {
  return h("span", { class: `badge ${status ?? "none"}` }, status ?? "not connected");
}

/** The service's message, and what it lists as wrong (a 400's problems). */
function failureNodes(failure: ServiceFailure): Child[] {
  const problems = failure.error_details?.["problems"];
  return [
    h("span", {}, failure.error),
    Array.isArray(problems) && problems.length > 0
      ? h("ul", {}, ...problems.map((problem) => h("li", {}, typeof problem === "string" ? problem : JSON.stringify(problem))))
      : null,
  ];
}

/** The integration's state: the facts a person checks, then the error and what to do about it. */
export function stateNodes(integration: Integration | undefined): Child[] {
  if (!integration) return [h("p", { class: "muted" }, "Not connected yet.")];
  const details = integration.details as ServiceValidationDetails | undefined;
  const expiry = expiryText(integration.expires_at);
  const facts = h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Last validated"),
    h("dd", {}, formatTime(integration.validated_at)),
    h("dt", {}, "Last checked"),
    h("dd", {}, formatTime(integration.last_checked_at)),
    expiry.text ? h("dt", {}, "Credential") : null,
    expiry.text ? h("dd", { class: expiry.warn ? "warn" : undefined }, expiry.text) : null,
  );
  const problem = integration.status === "error" || integration.status === "expired" ? integration.error_message : undefined;
  return [
    facts,
    problem ? h("p", { class: "alert", role: "note" }, problem) : null,
    problem && details?.fix ? h("p", { class: "fix" }, h("strong", {}, "How to fix: "), details.fix) : null,
  ];
}

export interface CardOptions {
  /** Extra controls in the card's header (the subscription toggle). */
  readonly headerExtras?: Child[];
  /** The card's heading level (h3 under a page's group headings). */
  readonly heading?: "h2" | "h3";
  /** Called after any change, with the integration as it now is (undefined: deleted). */
  readonly onChange?: (integration: Integration | undefined) => void;
}

export function integrationCard(
  context: CardContext,
  form: ProviderForm,
  initial: Integration | undefined,
  options: CardOptions = {},
): HTMLElement {
  const { session, actions } = context;
  const org = session.org;
  const titleId = uniqueId(`title-${form.id}`);
  let integration = initial;
  const badge = h("span", {});
  const state = h("div", {});
  const body = h("div", {});
  const message = h("p", { class: "message", role: "status" });
  const alert = h("div", { class: "alert", role: "alert" });
  const card = h(
    "section",
    { class: "card", "aria-labelledby": titleId, "data-provider": form.id },
    h("header", {}, h(options.heading ?? "h2", { id: titleId }, form.display_name), badge, ...(options.headerExtras ?? [])),
    state,
    body,
    message,
    alert,
  );

  const say = (text: string) => {
    replaceChildren(alert);
    message.textContent = text;
    announce(text);
  };
  const fail = (failure: ServiceFailure) => {
    message.textContent = "";
    replaceChildren(alert, ...failureNodes(failure));
  };
  const update = (next: Integration | undefined) => {
    integration = next;
    render();
    options.onChange?.(next);
  };
  /** After a validation: the verdict in words (the service's message and fix when it failed). */
  const sayValidated = (next: Integration, error: string | undefined) => {
    update(next);
    if (next.status === "active") say(`${form.display_name} is active.`);
    else if (error && next.error_message === error) {
      // The card's state now shows the service's message and the fix; say it once, not twice.
      say(`Validation failed: ${form.display_name} is ${next.status}; the problem and its fix are above.`);
      announce(error);
    } else if (error) fail({ success: false, error, code: "validation_failed", http_status: 200 });
    else say(`${form.display_name} is ${next.status}.`);
  };

  async function validate(button: HTMLButtonElement): Promise<void> {
    const answer = await withProgress(button, "Validating…", () => actions.validateIntegration(org, form.id));
    if ("integration" in answer) sayValidated(answer.integration, answer.error);
    else fail(answer);
  }

  function connectForm(): HTMLElement {
    if (form.connection === "oauth") {
      const button = h("button", { type: "button", class: "primary" }, `Connect with ${form.display_name}`);
      button.addEventListener("click", () =>
        void withProgress(button, "Opening the consent page…", async () => {
          const answer = await actions.startOAuth(org, form.id);
          if (!answer.success) return fail(answer);
          rememberOAuth({ org, provider: form.id });
          window.location.assign(answer.authorize_url);
        }),
      );
      return h("div", { class: "actions" }, button);
    }
    const credentials = credentialFields(form);
    const config = configFields(form);
    const submit = h("button", { type: "submit", class: "primary" }, "Connect and validate");
    const element = h(
      "form",
      { "aria-label": `Connect ${form.display_name}` },
      ...credentials.nodes,
      ...config.nodes,
      h("div", { class: "actions" }, submit),
    );
    element.addEventListener("submit", (event) => {
      event.preventDefault();
      const credentialValues = credentials.values();
      const configValues = config.values();
      credentials.clear();
      void withProgress(submit, "Connecting…", async () => {
        const created = await actions.setupIntegration(org, form.id, credentialValues, configValues);
        if (!created.success) return fail(created);
        update(created.integration);
        say(`Saved ${form.display_name}; validating…`);
        const validated = await actions.validateIntegration(org, form.id);
        if ("integration" in validated) sayValidated(validated.integration, validated.error);
        else fail(validated);
      });
    });
    return element;
  }

  function manageControls(current: Integration): HTMLElement {
    const disabled = current.status === "disabled";
    const validateButton = h("button", { type: "button", disabled: disabled || undefined }, "Validate");
    validateButton.addEventListener("click", () => void validate(validateButton));
    const toggle = h("button", { type: "button" }, disabled ? "Enable" : "Disable");
    toggle.addEventListener("click", () =>
      void withProgress(toggle, disabled ? "Enabling…" : "Disabling…", async () => {
        const answer = await actions.updateIntegration(org, form.id, { enabled: disabled });
        if (!answer.success) return fail(answer);
        update(answer.integration);
        say(`${form.display_name} is ${answer.integration.status}.`);
      }),
    );
    const remove = h("button", { type: "button", class: "danger" }, "Delete…");
    const confirmBox = h("div", { class: "actions", hidden: true });
    const confirm = h("button", { type: "button", class: "danger" }, `Delete ${form.display_name} and its credential`);
    const cancel = h("button", { type: "button" }, "Cancel");
    confirmBox.append(confirm, cancel);
    remove.addEventListener("click", () => {
      confirmBox.hidden = false;
      confirm.focus();
    });
    cancel.addEventListener("click", () => {
      confirmBox.hidden = true;
      remove.focus();
    });
    confirm.addEventListener("click", () =>
      void withProgress(confirm, "Deleting…", async () => {
        const answer = await actions.deleteIntegration(org, form.id);
        if (!answer.success) return fail(answer);
        update(undefined);
        say(`${form.display_name} was removed with its credential.`);
      }),
    );
    const extra: HTMLElement[] = [];
    if (form.connection === "oauth") {
      const reconnect = h("button", { type: "button" }, "Reconnect");
      reconnect.addEventListener("click", () =>
        void withProgress(reconnect, "Opening the consent page…", async () => {
          const answer = await actions.startOAuth(org, form.id);
          if (!answer.success) return fail(answer);
          rememberOAuth({ org, provider: form.id });
          window.location.assign(answer.authorize_url);
        }),
      );
      extra.push(reconnect);
    }
    return h(
      "div",
      {},
      h("div", { class: "actions" }, validateButton, toggle, ...extra, remove),
      confirmBox,
      form.credential ? rotateForm() : null,
      form.config_fields.length > 0 ? settingsForm(current) : null,
    );
  }

  function rotateForm(): HTMLElement {
    const credentials = credentialFields(form);
    const submit = h("button", { type: "submit" }, "Rotate");
    const element = h("form", { "aria-label": `Rotate the ${form.display_name} credential` }, ...credentials.nodes, h("div", { class: "actions" }, submit));
    element.addEventListener("submit", (event) => {
      event.preventDefault();
      const values = credentials.values();
      credentials.clear();
      void withProgress(submit, "Rotating…", async () => {
        const answer = await actions.rotateCredentials(org, form.id, values);
        if (!answer.success) return fail(answer);
        update(answer.integration);
        say(`Rotated: ${answer.message}`);
      });
    });
    return h("details", {}, h("summary", {}, "Rotate the credential"), h("p", { class: "muted" }, "The new credential is validated first; if it fails, the current one stays."), element);
  }

  function settingsForm(current: Integration): HTMLElement {
    const config = configFields(form, current.config as Record<string, unknown>);
    const submit = h("button", { type: "submit" }, "Save settings");
    const element = h("form", { "aria-label": `${form.display_name} settings` }, ...config.nodes, h("div", { class: "actions" }, submit));
    element.addEventListener("submit", (event) => {
      event.preventDefault();
      void withProgress(submit, "Saving…", async () => {
        const answer = await actions.updateIntegration(org, form.id, { config: config.values() });
        if (!answer.success) return fail(answer);
        update(answer.integration);
        say(`Saved; ${form.display_name} is ${answer.integration.status} until validated again.`);
      });
    });
    return h("details", {}, h("summary", {}, "Settings"), element);
  }

  function awsInstructions(): HTMLElement {
    const output = h("div", {});
    const button = h("button", { type: "button" }, "Show the setup instructions");
    button.addEventListener("click", () =>
      void withProgress(button, "Loading…", async () => {
        const answer = await actions.getAwsSetupInstructions(org);
        if (!answer.success) return fail(answer);
        const steps = answer.instructions;
        replaceChildren(
          output,
          h("dl", { class: "facts" }, h("dt", {}, "External ID"), h("dd", {}, h("code", {}, steps.external_id)), h("dt", {}, "Trusted principal"), h("dd", {}, h("code", {}, steps.platform_principal.role_arn))),
          h("ol", {}, ...steps.steps.map((step) => h("li", {}, step))),
          h("details", {}, h("summary", {}, "Trust policy"), h("pre", {}, JSON.stringify(steps.trust_policy, null, 2))),
          h("details", {}, h("summary", {}, "Permissions policy"), h("pre", {}, JSON.stringify(steps.permissions_policy, null, 2))),
          h("details", {}, h("summary", {}, "CloudFormation template"), h("pre", {}, steps.cloudformation_template)),
        );
      }),
    );
    return h("div", {}, h("h3", {}, "Before you connect"), h("p", { class: "muted" }, "Create a role in your AWS account that trusts the platform with your organization's external ID."), button, output);
  }

  function render(): void {
    replaceChildren(badge, statusBadge(integration?.status));
    replaceChildren(state, ...stateNodes(integration));
    replaceChildren(body, form.id === "aws" && !integration ? awsInstructions() : null, integration ? manageControls(integration) : connectForm());
  }

  render();
  return card;
}
