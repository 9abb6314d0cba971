// What a person's policy opens to an agent, as an MCP client sees it: host folders mounted and copied to,
// forks within the count, the isolation test, and what stays shut inside (root's files, root itself).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, call, uniquePrefix, sandboxesOnHost, removeLeftovers } from '../lib/server.js';

const backends = (process.env.AGENTSANDBOX_MCP_BACKENDS || 'Nspawn,Docker').split(',').map(s => s.trim()).filter(Boolean);

for (const backend of backends) {
  describe(`a policy that opens folders and forks on ${backend}`, { concurrency: false }, () => {
    const prefix = uniquePrefix();
    const host = fs.mkdtempSync(path.join(os.tmpdir(), 'agentsandbox-mcp-'));
    const data = path.join(host, 'data'), out = path.join(host, 'out'), elsewhere = path.join(host, 'elsewhere');
    let server, sandbox;
    before(async () => {
      for (const dir of [data, out, elsewhere]) fs.mkdirSync(dir);
      fs.writeFileSync(path.join(data, 'input.txt'), 'from the host\n');
      // A link inside the allowed folder that leads out of it.
      fs.symlinkSync(elsewhere, path.join(out, 'escape'));
      server = await connect(`-Backend ${backend} -NamePrefix ${prefix} -MaxSandboxes 2 -MaxMemory 512MB -MaxDiskSize 512MB -MaxCheckpoints 1 -AllowMount '${data}' -AllowCopyTo '${out}' -LogPath '${path.join(host, 'calls.log')}'`);
    });
    after(async () => {
      await server?.client.close().catch(() => {});
      removeLeftovers(prefix);
      fs.rmSync(host, { recursive: true, force: true });
    });

    it('shows its policy to the agent', async () => {
      const p = (await call(server.client, 'get_policy')).value;
      assert.deepEqual(p.mountFolders, [data]);
      assert.deepEqual(p.copyOutFolders, [out]);
      assert.equal(p.maxSandboxes, 2);
      assert.equal(p.maxDiskMB, 512);
      assert.equal(p.maxCheckpoints, 1);
      assert.equal(p.allowRoot, false);
      assert.equal(p.sandboxesRemovedAtExit, true);
    });

    it('mounts an allowed folder read-only, and refuses it writable', async () => {
      const writable = await call(server.client, 'create_sandbox', { name: 'rw', mounts: [{ hostPath: data, sandboxPath: '/mnt/data', readWrite: true }] });
      assert.equal(writable.isError, true);
      assert.match(writable.text, /^PolicyPathNotAllowed: .*writable/);
      const created = await call(server.client, 'create_sandbox', { name: 'main', mounts: [{ hostPath: data, sandboxPath: '/mnt/data' }] });
      assert.equal(created.isError, false, created.text);
      sandbox = created.value.name;
      assert.deepEqual(created.value.mounts, [{ hostPath: data, sandboxPath: '/mnt/data', readWrite: false }]);
      const r = await call(server.client, 'run_command', { sandbox, command: 'cat /mnt/data/input.txt; echo x > /mnt/data/new.txt' });
      assert.equal(r.value.stdOut, 'from the host\n');
      assert.notEqual(r.value.exitCode, 0);
      assert.equal(fs.existsSync(path.join(data, 'new.txt')), false);
    });

    it('runs as its own user, which cannot change root\'s files, and refuses root by any spelling', async () => {
      const id = await call(server.client, 'run_command', { sandbox, command: 'id -u' });
      assert.notEqual(id.value.stdOut.trim(), '0');
      // Files are read and written as that user: root's files stay root's.
      const w = await call(server.client, 'write_file', { sandbox, path: '/etc/passwd', content: 'toor::0:0::/:/bin/sh\n' });
      assert.match(w.text, /^InvalidPath: Writing '\/etc\/passwd' failed: .*(Permission denied|Read-only file system)/);
      const passwd = await call(server.client, 'read_file', { sandbox, path: '/etc/passwd' });
      assert.match(passwd.value.content, /^root:x:0:0:/);
      for (const user of ['root', '0', 'root:root', '0:0', '+0:0', ' 0', '1000:0']) {
        const r = await call(server.client, 'run_command', { sandbox, command: 'id -u', user });
        assert.match(r.text, /^PolicyRootNotAllowed: /, `user ${user}`);
      }
      // Any other user too: a name is what the sandbox's files say, and a number may be a host uid.
      for (const user of ['nobody', '1000', '65534:65534']) {
        const r = await call(server.client, 'run_command', { sandbox, command: 'id -u', user });
        assert.match(r.text, /^PolicyUserNotAllowed: /, `user ${user}`);
      }
      const own = await call(server.client, 'run_command', { sandbox, command: 'id -un', user: 'agent' });
      assert.equal(own.value.stdOut, 'agent\n');
    });

    it('copies a tree out into an allowed folder, never through a link out of it', async () => {
      await call(server.client, 'run_command', { sandbox, command: 'mkdir -p result/sub && echo one > result/a.txt && echo two > result/sub/b.txt' });
      const c = await call(server.client, 'copy_out', { sandbox, path: 'result', hostDestination: out });
      assert.equal(c.isError, false, c.text);
      assert.equal(c.value.files, 2);
      assert.equal(fs.readFileSync(path.join(out, 'result/a.txt'), 'utf8'), 'one\n');
      assert.equal(fs.readFileSync(path.join(out, 'result/sub/b.txt'), 'utf8'), 'two\n');
      const again = await call(server.client, 'copy_out', { sandbox, path: 'result', hostDestination: out });
      assert.equal(again.isError, true, 'an existing copy is kept without overwrite');
      const through = await call(server.client, 'copy_out', { sandbox, path: 'result', hostDestination: path.join(out, 'escape') });
      assert.match(through.text, /^PolicyPathNotAllowed: /);
      const rootOnly = await call(server.client, 'copy_out', { sandbox, path: '/root', hostDestination: out });
      assert.match(rootOnly.text, /^InvalidPath: .*the sandbox user cannot read this folder/);
      assert.equal(fs.existsSync(path.join(out, 'root')), false);
      // A link and '..' cannot make the check look at one file and the copy take another.
      await call(server.client, 'run_command', { sandbox, command: 'mkdir -p /tmp/a/b /tmp/root && echo decoy > /tmp/root/x && ln -s /tmp/a/b link' });
      const dotted = await call(server.client, 'copy_out', { sandbox, path: 'link/../../root', hostDestination: out });
      assert.match(dotted.text, /^InvalidPath: .*\/root: the sandbox user cannot read this folder/);
      const linked = await call(server.client, 'copy_out', { sandbox, path: 'link/x', hostDestination: out });
      assert.match(linked.text, /^InvalidPath: .*\/workspace\/link is a symbolic link/);
      // At most what the sandbox's disk could hold: a sparse file is written out in full.
      await call(server.client, 'run_command', { sandbox, command: 'truncate -s 600M sparse' });
      const sparse = await call(server.client, 'copy_out', { sandbox, path: 'sparse', hostDestination: out });
      assert.match(sparse.text, /^CopyLimitExceeded: .*holds 629145600 bytes, more than the \d+ bytes this copy may write; nothing was written/);
      assert.equal(fs.existsSync(path.join(out, 'sparse')), false);
      // And no more than that over all its copies: each copy of a sparse file takes real host disk.
      await call(server.client, 'run_command', { sandbox, command: 'truncate -s 300M sparse' });
      const first = await call(server.client, 'copy_out', { sandbox, path: 'sparse', hostDestination: path.join(out, 'one') });
      assert.equal(first.isError, false, first.text);
      const second = await call(server.client, 'copy_out', { sandbox, path: 'sparse', hostDestination: path.join(out, 'two') });
      assert.match(second.text, /^CopyLimitExceeded: .*holds 314572800 bytes, more than the \d+ bytes/);
      fs.rmSync(path.join(out, 'one'));
      await call(server.client, 'run_command', { sandbox, command: 'rm sparse' });
      const outside = await call(server.client, 'copy_out', { sandbox, path: 'result', hostDestination: elsewhere });
      assert.match(outside.text, /^PolicyPathNotAllowed: /);
      assert.deepEqual(fs.readdirSync(elsewhere), []);
    });

    it('forks from a checkpoint within the most sandboxes at once', async () => {
      await call(server.client, 'write_file', { sandbox, path: 'state.txt', content: 'checkpointed\n' });
      const c = await call(server.client, 'checkpoint_sandbox', { sandbox, checkpoint: 'base' });
      assert.equal(c.isError, false, c.text);
      const listed = await call(server.client, 'list_checkpoints', { sandbox });
      assert.deepEqual(listed.value.map(x => x.name), ['base']);
      const second = await call(server.client, 'checkpoint_sandbox', { sandbox, checkpoint: 'more' });
      assert.match(second.text, /^PolicyLimitExceeded: The policy allows 1 checkpoint\(s\) per sandbox/);
      const fork = await call(server.client, 'fork_sandbox', { sandbox, checkpoint: 'base', name: 'fork' });
      assert.equal(fork.isError, false, fork.text);
      assert.equal(fork.value.name, `${prefix}fork`);
      assert.equal(fork.value.backend, backend);
      assert.equal(fork.value.memoryBytes, 512 * 1024 * 1024);
      const read = await call(server.client, 'read_file', { sandbox: fork.value.name, path: 'state.txt' });
      assert.equal(read.value.content, 'checkpointed\n');
      const third = await call(server.client, 'fork_sandbox', { sandbox, checkpoint: 'base' });
      assert.match(third.text, /^PolicyTooManySandboxes: /);
      assert.deepEqual(sandboxesOnHost(prefix).sort(), [`${prefix}fork`, sandbox].sort());
      const removed = await call(server.client, 'remove_sandbox', { sandbox: fork.value.name });
      assert.equal(removed.isError, false, removed.text);
    });

    it('cuts a listing too long to return, and says so', async () => {
      const made = await call(server.client, 'run_command', { sandbox, command: 'mkdir many && cd many && seq -w 1 40000 | sed s/^/a-file-with-a-rather-long-name-/ | xargs touch && ls | wc -l', timeoutSeconds: 300 });
      assert.equal(made.value.stdOut.trim(), '40000', made.text);
      const ls = await call(server.client, 'list_files', { sandbox, path: 'many' });
      assert.equal(ls.value.truncated, true);
      assert.ok(ls.value.listing.length <= 2 * 1024 * 1024 && ls.value.listing.length > 1024 * 1024, `${ls.value.listing.length} characters`);
      const small = await call(server.client, 'list_files', { sandbox });
      assert.equal(small.value.truncated, undefined);
      await call(server.client, 'run_command', { sandbox, command: 'rm -rf many' });
    });

    it('logs every call to its file, one line each, which a name an agent gives cannot forge', async () => {
      const forged = 'x\n2020-01-01T00:00:00.000Z agentsandbox-mcp tool=remove_sandbox sandbox=y outcome=ok \u001b[2J';
      const r = await call(server.client, 'get_sandbox', { sandbox: forged });
      assert.match(r.text, /^SandboxNotFound: /);
      const lines = fs.readFileSync(path.join(host, 'calls.log'), 'utf8').trimEnd().split('\n');
      for (const line of lines) assert.match(line, /^\d{4}-\d\d-\d\dT[\d:.]+Z agentsandbox-mcp [^\u0000-\u001f]*$/, line);
      assert.ok(lines.some(l => l.includes(`tool=create_sandbox sandbox=${sandbox} outcome=created ${backend}`)), lines.join('\n'));
      assert.ok(lines.some(l => l.includes('tool=copy_out') && l.includes('outcome=error PolicyPathNotAllowed')));
      assert.ok(lines.at(-1).includes('tool=get_sandbox sandbox=x?2020-01-01T00:00:00.000Z_agentsandbox-mcp_tool=remove_sandbox_sandbox=y_outcome=ok_?[2J outcome=error SandboxNotFound'), lines.at(-1));
    });

    it('tests its isolation: every claim held, the attempts made as its own user', async () => {
      const progress = [];
      const r = await call(server.client, 'test_isolation', { sandbox }, { onprogress: p => progress.push(p), resetTimeoutOnProgress: true });
      assert.equal(r.isError, false, r.text);
      assert.equal(r.value.violated, 0, JSON.stringify(r.value.boundaries.filter(b => !b.held)));
      assert.equal(r.value.asRoot, false);
      const claimed = r.value.boundaries.filter(b => b.claimed).map(b => b.boundary);
      for (const boundary of ['Filesystem', 'Process', 'Network']) assert.ok(claimed.includes(boundary), `${boundary} is claimed and tested`);
      assert.ok(progress.length > 5, 'progress per attempt');
    });
  });
}
