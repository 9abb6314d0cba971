// The MCP Inspector's command-line client, headless, against the server as a client configuration names it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { serverCommand, serverEnvironment, uniquePrefix } from '../lib/server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const inspector = path.resolve(here, '../node_modules/.bin/mcp-inspector-cli');

function inspect(parameters, ...method) {
  const { command, args } = serverCommand(parameters);
  // Run from this folder: the inspector looks for its own package.json from the folder above the current one.
  const r = spawnSync(inspector, ['--cli', command, ...args, ...method], { cwd: here, env: { ...process.env, ...serverEnvironment() }, encoding: 'utf8', timeout: 120000 });
  assert.equal(r.status, 0, `the inspector failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe('the MCP Inspector CLI', () => {
  it('lists the tools, each with a description, an input schema and hints', () => {
    const { tools } = inspect(`-NamePrefix ${uniquePrefix()}`, '--method', 'tools/list');
    assert.equal(tools.length, 16);
    const create = tools.find(t => t.name === 'create_sandbox');
    assert.ok(create.inputSchema.properties.memoryMB);
    assert.equal(tools.find(t => t.name === 'remove_sandbox').annotations.destructiveHint, true);
    assert.equal(tools.find(t => t.name === 'read_file').annotations.readOnlyHint, true);
  });

  it('calls a tool and reads its result', () => {
    const result = inspect(`-NamePrefix ${uniquePrefix()} -MaxSandboxes 2`, '--method', 'tools/call', '--tool-name', 'get_policy');
    assert.equal(result.isError, false);
    const policy = JSON.parse(result.content[0].text);
    assert.equal(policy.maxSandboxes, 2);
    assert.equal(policy.network, 'None');
  });
});
