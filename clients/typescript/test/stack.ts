/**
 * The real service for the tests: `python -m tests.demo`, the process `make demo` runs. It serves
 * the API exactly as `make run` does, beside the provider, SaaS, OAuth, Azure and AWS simulators
 * on free loopback ports, and writes their addresses to demo.env in a fresh data directory.
 * Nothing here is mocked: every answer comes from the service's own code over HTTP.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** clients/typescript, whether this runs from test/ or dist/test/. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const REPO = path.resolve(PACKAGE_ROOT, "..", "..");
const PYTHON = process.env["PYTHON"] ?? path.join(REPO, ".venv", "bin", "python");
const SIMULATOR_PORTS = ["SIMULATOR_PORT", "RECEIVER_PORT", "AZURE_SIMULATOR_PORT", "SAAS_SIMULATOR_PORT", "AWS_SIMULATOR_PORT", "OAUTH_SIMULATOR_PORT"];

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** demo.env's `export NAME=value` lines (values shell-quoted by Python's shlex.quote, or bare). */
export function parseExports(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = /^export ([A-Z0-9_]+)=(.*)$/.exec(line);
    if (!match?.[1] || match[2] === undefined) continue;
    const raw = match[2];
    if (raw.startsWith("'")) {
      // shlex.quote: '...' with each embedded quote written as '"'"'
      const quoted = /^((?:'[^']*'|"'")+)/.exec(raw)?.[1] ?? "";
      values[match[1]] = quoted.replace(/'"'"'/g, "'").replace(/^'|'$/g, "");
    } else {
      values[match[1]] = raw.split(/\s/)[0] ?? "";
    }
  }
  return values;
}

export interface Stack {
  /** The service, e.g. http://127.0.0.1:PORT. */
  readonly base: string;
  readonly port: number;
  /** demo.env: the simulators' addresses (SIMULATOR, OAUTH_SIMULATOR, ...) and the settings the CLI shares. */
  readonly env: Readonly<Record<string, string>>;
  readonly dataDir: string;
  /** A new org API key from the admin CLI, as an operator makes one. */
  createKey(org: string, admin?: boolean): string;
  /** Everything the service process has logged so far. */
  log(): string;
  stop(): Promise<void>;
}

async function waitFor(check: () => Promise<boolean>, what: string, process: ChildProcess, logPath: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (process.exitCode !== null) throw new Error(`the service exited early:\n${readFileSync(logPath, "utf8").slice(-3000)}`);
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} did not happen in 60 s:\n${readFileSync(logPath, "utf8").slice(-3000)}`);
}

/** Start the service and its simulators; `settings` are extra environment for the service. */
export async function startStack(settings: Record<string, string> = {}, port?: number): Promise<Stack> {
  const servicePort = port ?? (await freePort());
  const dataDir = await mkdtemp(path.join(tmpdir(), "integrations-client-"));
  const logPath = path.join(dataDir, "service.log");
  const inherited = { ...process.env };
  delete inherited["INTEGRATIONS_SECRET_API_KEY_PEPPER"];
  const env = {
    ...inherited,
    ...Object.fromEntries(SIMULATOR_PORTS.map((name) => [name, "0"])),
    PORT: String(servicePort),
    INTEGRATIONS_DATA_DIR: dataDir,
    // Short waits on the simulators' 429s, as the Python end-to-end test uses.
    VALIDATION_RETRY_AFTER_CAP_SECONDS: "0.2",
    ...settings,
  };
  const log = createWriteStream(logPath);
  await new Promise((resolve) => log.once("open", resolve));
  const child = spawn(PYTHON, ["-m", "tests.demo"], { cwd: REPO, env, detached: true, stdio: ["ignore", log, log] });
  const base = `http://127.0.0.1:${servicePort}`;
  const envFile = path.join(dataDir, "demo.env");
  await waitFor(async () => existsSync(envFile) && (await fetch(`${base}/healthz`)).ok, "the service answering /healthz", child, logPath);
  const demoEnv = parseExports(readFileSync(envFile, "utf8"));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    base,
    port: servicePort,
    env: demoEnv,
    dataDir,
    createKey(org: string, admin = false) {
      const output = execFileSync(PYTHON, ["-m", "shared.cli", "create-key", "--org", org, ...(admin ? ["--admin"] : [])], {
        cwd: REPO,
        env: { ...inherited, ...demoEnv },
        encoding: "utf8",
      });
      return (JSON.parse(output) as { api_key: string }).api_key;
    },
    log: () => readFileSync(logPath, "utf8"),
    async stop() {
      if (child.exitCode === null && child.pid !== undefined) {
        process.kill(-child.pid, "SIGTERM");
        const timer = setTimeout(() => child.pid !== undefined && process.kill(-child.pid, "SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }
      log.end();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
