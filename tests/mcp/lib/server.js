// Starts Start-AgentSandboxMcpServer in pwsh as an MCP client would, and connects the official TypeScript SDK to it.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// build.ps1 names the pwsh and the folder holding the built module; run by hand, the defaults are these.
export const pwsh = process.env.AGENTSANDBOX_TEST_PWSH || 'pwsh';
export const modules = process.env.AGENTSANDBOX_TEST_MODULES || path.resolve(here, '../../../out');

/** The environment the server runs in: the client's own few variables and what the module needs. */
export function serverEnvironment() {
  const env = { PSModulePath: modules, NO_COLOR: '1', POWERSHELL_UPDATECHECK: 'Off', POWERSHELL_TELEMETRY_OPTOUT: '1', AGENTSANDBOX_LAZY_SWEEP: '0' };
  for (const name of ['AGENTSANDBOX_HOME', 'DOCKER_HOST', 'TMPDIR']) if (process.env[name]) env[name] = process.env[name];
  return env;
}

/** A name prefix of this test run's own, so that what it leaves (or not) is told apart from anything else. */
export function uniquePrefix() {
  return `mcp-t${randomBytes(3).toString('hex')}-`;
}

/** The command line an MCP client configuration holds: pwsh importing the module and starting the server. */
export function serverCommand(parameters) {
  return { command: pwsh, args: ['-NoProfile', '-NonInteractive', '-Command', `Import-Module AgentSandbox; Start-AgentSandboxMcpServer ${parameters}`] };
}

/** Starts the server and connects a client; stderr (the server's log) is collected. */
export async function connect(parameters) {
  const { command, args } = serverCommand(parameters);
  const transport = new StdioClientTransport({ command, args, env: serverEnvironment(), stderr: 'pipe' });
  const log = [];
  transport.stderr?.on('data', d => log.push(String(d)));
  const client = new Client({ name: 'agentsandbox-tests', version: '0.1.0' });
  await client.connect(transport);
  return { client, transport, log: () => log.join('') };
}

/** A tool call's JSON result, or its error text when isError. */
export async function call(client, name, args = {}, options = {}) {
  const result = await client.callTool({ name, arguments: args }, undefined, { timeout: 300000, ...options });
  const text = result.content?.[0]?.text ?? '';
  if (result.isError) return { isError: true, text, value: tryParse(text) };
  return { isError: false, text, value: JSON.parse(text) };
}

function tryParse(text) {
  try { return JSON.parse(text); } catch { return undefined; }
}

/** The names of the host's sandboxes that start with a prefix, as the module lists them (another pwsh). */
export function sandboxesOnHost(prefix) {
  const script = `Import-Module AgentSandbox; Get-AgentSandbox -Name '${prefix}*' -WarningAction SilentlyContinue | ForEach-Object Name`;
  const r = spawnSync(pwsh, ['-NoProfile', '-NonInteractive', '-Command', script], { env: { ...process.env, ...serverEnvironment() }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`Get-AgentSandbox failed: ${r.stderr}`);
  return r.stdout.split('\n').map(s => s.trim()).filter(Boolean);
}

/** Removes what a failed test may have left (never anything outside its own prefix). */
export function removeLeftovers(prefix) {
  const script = `Import-Module AgentSandbox; Get-AgentSandbox -Name '${prefix}*' -WarningAction SilentlyContinue | Remove-AgentSandbox -Confirm:$false`;
  spawnSync(pwsh, ['-NoProfile', '-NonInteractive', '-Command', script], { env: { ...process.env, ...serverEnvironment() }, encoding: 'utf8' });
}

/** Whether a process is alive. */
export function alive(pid) {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

/** Waits until a condition holds, or fails after a time. */
export async function waitFor(what, condition, ms = 30000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await condition()) return;
    await new Promise(r => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}
