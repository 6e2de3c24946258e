/**
 * The org key, entered once per browser session: kept in sessionStorage (this tab, until it
 * closes), never in localStorage, a cookie or the URL. Also the OAuth flow this tab started, so
 * the page it comes back to can name the provider when the callback could not (a failure before
 * the flow was known, e.g. an expired state).
 */

export interface Session {
  /** Where the API is: this page's origin by default, or another origin (through CORS). */
  readonly apiBase: string;
  readonly org: string;
  readonly apiKey: string;
}

export interface PendingOAuth {
  readonly org: string;
  readonly provider: string;
}

const SESSION_KEY = "integrations-console.session";
const OAUTH_KEY = "integrations-console.oauth";

function read<T>(key: string): T | null {
  try {
    const raw = sessionStorage.getItem(key);
    return raw ? (JSON.parse(raw) as T) : null;
  } catch {
    return null;
  }
}

export function loadSession(): Session | null {
  const session = read<Session>(SESSION_KEY);
  return session && session.org && session.apiKey && session.apiBase ? session : null;
}

export function saveSession(session: Session): void {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function clearSession(): void {
  sessionStorage.removeItem(SESSION_KEY);
  sessionStorage.removeItem(OAUTH_KEY);
}

export function rememberOAuth(pending: PendingOAuth): void {
  sessionStorage.setItem(OAUTH_KEY, JSON.stringify(pending));
}

export function takePendingOAuth(): PendingOAuth | null {
  const pending = read<PendingOAuth>(OAUTH_KEY);
  sessionStorage.removeItem(OAUTH_KEY);
  return pending;
}
