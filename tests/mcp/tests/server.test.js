// Start-AgentSandboxMcpServer as an MCP client sees it: the official TypeScript SDK over stdio, real
// sandboxes on each backend named in AGENTSANDBOX_MCP_BACKENDS (Nspawn and Docker by default).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, call, uniquePrefix, sandboxesOnHost, removeLeftovers, alive, waitFor } from '../lib/server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const backends = (process.env.AGENTSANDBOX_MCP_BACKENDS || 'Nspawn,Docker').split(',').map(s => s.trim()).filter(Boolean);

const expectedTools = ['list_backends', 'get_policy', 'create_sandbox', 'list_sandboxes', 'get_sandbox', 'remove_sandbox', 'run_command',
  'read_file', 'write_file', 'list_files', 'copy_out', 'checkpoint_sandbox', 'list_checkpoints', 'restore_sandbox', 'fork_sandbox', 'test_isolation'];

for (const backend of backends) {
  describe(`an MCP session on ${backend}`, { concurrency: false }, () => {
    const prefix = uniquePrefix();
    let server, sandbox;
    before(async () => { server = await connect(`-Backend ${backend} -NamePrefix ${prefix} -MaxSandboxes 1 -MaxMemory 512MB -MaxDiskSize 256MB -DefaultTimeToLive 00:20:00`); });
    after(async () => { await server?.client.close().catch(() => {}); removeLeftovers(prefix); });

    it('initializes and lists every tool with a description and an input schema', async () => {
      assert.equal(server.client.getServerVersion().name, 'agentsandbox');
      const { tools } = await server.client.listTools();
      assert.deepEqual(tools.map(t => t.name).sort(), [...expectedTools].sort());
      for (const tool of tools) {
        assert.ok(tool.description.length > 40, `${tool.name} has a description`);
        assert.equal(tool.inputSchema.type, 'object', `${tool.name} has an object schema`);
      }
      const backendsResult = await call(server.client, 'list_backends');
      const info = backendsResult.value.find(b => b.name === backend);
      assert.equal(info.available, true);
      assert.equal(info.allowedByPolicy, true);
    });

    it('creates a sandbox within the policy, its limits filled in from it', async () => {
      const created = await call(server.client, 'create_sandbox', { name: 'main' });
      assert.equal(created.isError, false, created.text);
      sandbox = created.value.name;
      assert.equal(sandbox, `${prefix}main`);
      assert.equal(created.value.backend, backend);
      assert.equal(created.value.memoryBytes, 512 * 1024 * 1024);
      // The disk ceiling applies where the backend limits disk (Docker does only on some data roots).
      const info = (await call(server.client, 'list_backends')).value.find(b => b.name === backend);
      assert.equal(created.value.diskSizeBytes, info.limits.includes('Disk') ? 256 * 1024 * 1024 : undefined);
      assert.equal(created.value.network, 'None');
      assert.ok(Date.parse(created.value.expiresAt) - Date.now() <= 20 * 60 * 1000);
      assert.deepEqual(sandboxesOnHost(prefix), [sandbox]);
    });

    it('runs a command: output, exit code, and progress while it runs', async () => {
      const progress = [];
      const r = await call(server.client, 'run_command', { sandbox, command: 'for i in 1 2 3; do echo line$i; sleep 1; done; echo oops >&2; exit 3' },
        { onprogress: p => progress.push(p), resetTimeoutOnProgress: true });
      assert.equal(r.isError, false, r.text);
      assert.equal(r.value.exitCode, 3);
      assert.equal(r.value.stdOut, 'line1\nline2\nline3\n');
      assert.equal(r.value.stdErr, 'oops\n');
      assert.ok(progress.length >= 2, `progress notifications: ${JSON.stringify(progress)}`);
      assert.match(progress.at(-1).message, /line/);
    });

    it('writes, reads and lists files', async () => {
      const text = 'héllo from the client\nsecond line\n';
      const w = await call(server.client, 'write_file', { sandbox, path: 'hello.txt', content: text });
      assert.equal(w.isError, false, w.text);
      const r = await call(server.client, 'read_file', { sandbox, path: '/workspace/hello.txt' });
      assert.equal(r.value.content, text);
      assert.equal(r.value.encoding, 'utf8');
      const bin = await call(server.client, 'write_file', { sandbox, path: 'blob.bin', content: Buffer.from([0, 255, 1, 254]).toString('base64'), encoding: 'base64' });
      assert.equal(bin.isError, false, bin.text);
      const rb = await call(server.client, 'read_file', { sandbox, path: 'blob.bin' });
      assert.equal(rb.value.encoding, 'base64');
      assert.equal(rb.value.content, Buffer.from([0, 255, 1, 254]).toString('base64'));
      // Larger files, text and binary, come back byte for byte.
      const random = randomBytes(300000);
      const wb = await call(server.client, 'write_file', { sandbox, path: 'random.bin', content: random.toString('base64'), encoding: 'base64' });
      assert.equal(wb.value.bytes, 300000, wb.text);
      assert.equal((await call(server.client, 'read_file', { sandbox, path: 'random.bin' })).value.content, random.toString('base64'));
      const lines = Array.from({ length: 2000 }, (_, i) => `line ${i} ünïcode`).join('\n') + '\n';
      await call(server.client, 'write_file', { sandbox, path: 'lines.txt', content: lines });
      assert.equal((await call(server.client, 'read_file', { sandbox, path: 'lines.txt' })).value.content, lines);
      const ls = await call(server.client, 'list_files', { sandbox });
      assert.match(ls.value.listing, /hello\.txt/);
      assert.match(ls.value.listing, /blob\.bin/);
      const missing = await call(server.client, 'read_file', { sandbox, path: 'nope.txt' });
      assert.match(missing.text, /^SandboxItemNotFound: 'nope.txt' does not exist/);
      // Read inside, at most 1 MiB: a bigger file is refused without being copied anywhere first.
      await call(server.client, 'run_command', { sandbox, command: 'head -c 2000000 /dev/zero > big.bin' });
      const big = await call(server.client, 'read_file', { sandbox, path: 'big.bin' });
      assert.match(big.text, /^InvalidPath: 'big.bin' holds more than the 1048576 bytes/);
    });

    it('kills a command that outlives its timeout and says so', async () => {
      const started = Date.now();
      const r = await call(server.client, 'run_command', { sandbox, command: 'echo before; sleep 60', timeoutSeconds: 2 });
      assert.equal(r.isError, true);
      assert.equal(r.value.timedOut, true);
      assert.equal(r.value.stdOut, 'before\n');
      assert.ok(Date.now() - started < 30000, 'returned soon after the timeout');
    });

    it('refuses what the policy does not allow, with the ErrorId', async () => {
      const refused = async (tool, args, errorId) => {
        const r = await call(server.client, tool, args);
        assert.equal(r.isError, true, `${tool} ${JSON.stringify(args)} was refused`);
        assert.match(r.text, new RegExp(`^${errorId}: `), r.text);
      };
      await refused('create_sandbox', {}, 'PolicyTooManySandboxes');
      await refused('run_command', { sandbox, command: 'id', user: 'root' }, 'PolicyRootNotAllowed');
      await refused('copy_out', { sandbox, path: 'hello.txt', hostDestination: '/tmp' }, 'PolicyPathNotAllowed');
      await refused('get_sandbox', { sandbox: 'not-ours' }, 'SandboxNotFound');
      await refused('run_command', { sandbox, command: 42 }, 'InvalidToolArgument');
    });

    it('refuses limits, network, mounts and backends beyond the policy', async () => {
      // A second server with room for one more sandbox, so that create reaches the limit checks.
      const other = await connect(`-Backend ${backend} -NamePrefix ${prefix}x- -MaxMemory 512MB`);
      try {
        const refused = async (args, errorId) => {
          const r = await call(other.client, 'create_sandbox', args);
          assert.equal(r.isError, true, `${JSON.stringify(args)} was refused`);
          assert.match(r.text, new RegExp(`^${errorId}: `), r.text);
        };
        await refused({ memoryMB: 4096 }, 'PolicyLimitExceeded');
        await refused({ cpuCount: 16 }, 'PolicyLimitExceeded');
        await refused({ diskMB: 100000 }, 'PolicyLimitExceeded');
        await refused({ timeToLiveMinutes: 100000 }, 'PolicyTimeToLiveExceeded');
        await refused({ network: 'Allow', allowHosts: ['example.com'] }, 'PolicyNetworkNotAllowed');
        await refused({ mounts: [{ hostPath: '/etc', sandboxPath: '/mnt/etc' }] }, 'PolicyPathNotAllowed');
        await refused({ backend: 'Chroot' }, 'PolicyBackendNotAllowed');
        assert.deepEqual(sandboxesOnHost(`${prefix}x-`), []);
      } finally { await other.client.close(); }
    });

    it('checkpoints and restores a sandbox', async () => {
      await call(server.client, 'write_file', { sandbox, path: 'state.txt', content: 'before\n' });
      const c = await call(server.client, 'checkpoint_sandbox', { sandbox, checkpoint: 'c1' });
      assert.equal(c.isError, false, c.text);
      await call(server.client, 'write_file', { sandbox, path: 'state.txt', content: 'after\n' });
      const r = await call(server.client, 'restore_sandbox', { sandbox, checkpoint: 'c1' });
      assert.equal(r.isError, false, r.text);
      const read = await call(server.client, 'read_file', { sandbox, path: 'state.txt' });
      assert.equal(read.value.content, 'before\n');
    });

    it('shows a sandbox\'s details as a tool and as a resource', async () => {
      const d = await call(server.client, 'get_sandbox', { sandbox });
      assert.equal(d.value.name, sandbox);
      assert.equal(d.value.state, 'Running');
      const { resources } = await server.client.listResources();
      assert.deepEqual(resources.map(r => r.uri), [`sandbox://${sandbox}`]);
      const res = await server.client.readResource({ uri: `sandbox://${sandbox}` });
      assert.equal(JSON.parse(res.contents[0].text).name, sandbox);
    });

    it('removes a sandbox, and what it made when the client closes', async () => {
      const r = await call(server.client, 'remove_sandbox', { sandbox });
      assert.equal(r.isError, false, r.text);
      assert.deepEqual(sandboxesOnHost(prefix), []);
      const again = await call(server.client, 'create_sandbox', { name: 'left' });
      assert.equal(again.isError, false, again.text);
      const pid = server.transport.pid;
      await server.client.close();
      await waitFor('the server to exit', () => !alive(pid));
      assert.deepEqual(sandboxesOnHost(prefix), []);
      assert.match(server.log(), /tool=create_sandbox sandbox=\S+left outcome=created/);
      assert.match(server.log(), /removed \S+left/);
    });
  });

  describe(`a signal to the server on ${backend}`, () => {
    const prefix = uniquePrefix();
    after(() => removeLeftovers(prefix));

    it('ends the session and removes its sandboxes while the client still holds its input open', async () => {
      const server = await connect(`-Backend ${backend} -NamePrefix ${prefix}`);
      const pid = server.transport.pid;
      try {
        const created = await call(server.client, 'create_sandbox', {});
        assert.equal(created.isError, false, created.text);
        assert.deepEqual(sandboxesOnHost(prefix), [created.value.name]);
        process.kill(pid, 'SIGTERM');
        await waitFor('the server to exit', () => !alive(pid), 60000);
        assert.deepEqual(sandboxesOnHost(prefix), []);
        assert.match(server.log(), /SIGTERM: ending the session/);
        assert.match(server.log(), new RegExp(`removed ${created.value.name}`));
      } finally { if (alive(pid)) process.kill(pid, 'SIGKILL'); await server.client.close().catch(() => {}); }
    });
  });

  describe(`a client killed mid-command on ${backend}`, () => {
    const prefix = uniquePrefix();
    after(() => removeLeftovers(prefix));

    it('leaves no sandbox and no server behind', async () => {
      const child = spawn(process.execPath, [path.join(here, '../lib/hold.js'), backend, prefix], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', d => { out += d; });
      // Whatever fails, the client does not outlive the test.
      try {
        await waitFor('the command to start', () => /RUNNING/.test(out) || /FAILED/.test(out) || child.exitCode !== null, 120000);
        assert.doesNotMatch(out, /FAILED/);
        const pid = Number(/PWSH_PID (\d+)/.exec(out)[1]);
        const name = /SANDBOX (\S+)/.exec(out)[1];
        assert.deepEqual(sandboxesOnHost(prefix), [name]);
        child.kill('SIGKILL');
        await waitFor('the server to exit', () => !alive(pid), 60000);
        assert.deepEqual(sandboxesOnHost(prefix), []);
      } finally { child.kill('SIGKILL'); }
    });
  });
}
