'use strict';
// The AgentSandboxRun task against the real module and real sandboxes on this host (Chroot: quick, and
// the same handler code path as any backend). No Azure DevOps agent is involved: the task library's mock
// runner sets the inputs and reads the logging commands the task writes, as an agent would.
const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const cp = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

const taskDir = path.join(__dirname, '..', 'tasks', 'AgentSandboxRun');
const { MockTestRunner } = require(path.join(taskDir, 'node_modules', 'azure-pipelines-task-lib', 'mock-test'));
const runTask = path.join(__dirname, 'runTask.js');
const pwsh = process.env.AGENTSANDBOX_TEST_PWSH || 'pwsh';
const backend = process.env.AGENTSANDBOX_TEST_BACKEND || 'Chroot';
const temp = fs.mkdtempSync(path.join(os.tmpdir(), 'agentsandbox-task-test-'));

// The module under test, importable by name from here alone: pwsh's per-user module folder (XDG_DATA_HOME)
// is moved out of the way, so that a copy installed for the user is not the one tested.
if (process.env.AGENTSANDBOX_TEST_MODULES) process.env.PSModulePath = process.env.AGENTSANDBOX_TEST_MODULES;
process.env.XDG_DATA_HOME = path.join(temp, 'xdg');
// As on an agent: the module then writes its own warnings and errors as logging commands too.
process.env.TF_BUILD = 'True';

const newName = () => `pt-task-${crypto.randomBytes(4).toString('hex')}`;
const inputsFor = (name, inputs) => JSON.stringify({ pwshPath: pwsh, backend, sandboxName: name, artifactName: '', ...inputs });

async function runMocked(name, inputs) {
  process.env.AGENTSANDBOX_TEST_INPUTS = inputsFor(name, inputs);
  process.env.AGENT_TEMPDIRECTORY = temp;
  const tr = new MockTestRunner(runTask, path.join(taskDir, 'task.json'));
  // The runner would download a Node of the handler's version from nodejs.org; this one is as good.
  tr.nodePath = process.execPath;
  await tr.runAsync();
  return tr;
}

// The same run as a plain child process: its exit code, and a handle to signal it.
function startRaw(name, inputs) {
  const child = cp.spawn(process.execPath, [runTask], {
    env: { ...process.env, AGENTSANDBOX_TEST_INPUTS: inputsFor(name, inputs), AGENT_TEMPDIRECTORY: temp },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  child.stdout.on('data', d => { stdout += d; });
  child.stderr.on('data', d => { stdout += d; });
  const exited = new Promise(resolve => child.on('exit', code => resolve({ code, stdout })));
  return { child, exited, output: () => stdout };
}

function pwshOutput(script) {
  return cp.spawnSync(pwsh, ['-NoProfile', '-NonInteractive', '-Command', script], { encoding: 'utf8' }).stdout;
}
const sandboxExists = name => {
  const answer = pwshOutput(`Import-Module AgentSandbox; if (Get-AgentSandbox -Name '${name}' -ErrorAction Ignore) { 'EXISTS' } else { 'ABSENT' }`);
  assert.match(answer, /EXISTS|ABSENT/);
  return answer.includes('EXISTS');
};
const lines = tr => tr.stdout.split(/\r?\n/);
const completion = tr => lines(tr).filter(l => l.startsWith('##vso[task.complete'));

after(() => fs.rmSync(temp, { recursive: true, force: true }));

describe('AgentSandboxRun', () => {
  test('runs an inline script with the folder copied in, streams its output in a group, copies paths out and publishes them', async () => {
    const name = newName();
    const work = fs.mkdtempSync(path.join(temp, 'work-'));
    fs.writeFileSync(path.join(work, 'input.txt'), 'from the host\n');
    fs.writeFileSync(path.join(work, '.hidden'), 'dot file\n');
    const out = path.join(temp, `out-${name}`);
    const tr = await runMocked(name, {
      script: 'echo first line\ncat input.txt .hidden\necho to stderr >&2\nmkdir -p results && echo 42 > results/answer.txt\necho last line',
      workingDirectory: work, outputPaths: 'results\nmissing.txt', outputDirectory: out, artifactName: 'sandbox-results',
    });
    assert.ok(tr.succeeded, tr.stdout);
    assert.deepEqual(completion(tr), [`##vso[task.complete result=Succeeded;]The script succeeded in sandbox '${name}'.`]);
    const l = lines(tr);
    const start = l.indexOf(`##[group]Running the script in '${name}'`);
    assert.ok(start >= 0, tr.stdout);
    const group = l.slice(start + 1, l.indexOf('##[endgroup]', start));
    // stdout in order; stderr is a pipe of its own, so where its line falls among them is the scheduler's choice.
    assert.deepEqual(group.filter(x => x !== 'to stderr'), ['first line', 'from the host', 'dot file', 'last line']);
    assert.ok(group.includes('to stderr'), tr.stdout);
    assert.ok(l.includes(`##[group]Copying ${work} into the sandbox`));
    assert.equal(fs.readFileSync(path.join(out, 'results', 'answer.txt'), 'utf8'), '42\n');
    assert.ok(l.includes(`##vso[artifact.upload containerfolder=sandbox-results;artifactname=sandbox-results;]${out}`), tr.stdout);
    assert.ok(l.includes(`##vso[task.setvariable variable=SandboxName;isOutput=true;issecret=false;]${name}`), tr.stdout);
    assert.equal(sandboxExists(name), false);
  });

  test('a failing script fails the step with its exit code and a logged error, copies out and removes the sandbox', async () => {
    const name = newName();
    const out = path.join(temp, `out-${name}`);
    const inputs = { script: 'echo partial > report.txt\nexit 3', outputPaths: 'report.txt', outputDirectory: out, artifactName: 'report' };
    const tr = await runMocked(name, inputs);
    assert.equal(tr.succeeded, false);
    assert.deepEqual(tr.errorIssues, [`The script exited with code 3 in sandbox '${name}'.`]);
    assert.ok(lines(tr).includes(`##vso[task.issue type=error;source=TaskInternal;]The script exited with code 3 in sandbox '${name}'.`), tr.stdout);
    assert.equal(fs.readFileSync(path.join(out, 'report.txt'), 'utf8'), 'partial\n');
    assert.ok(lines(tr).includes(`##vso[artifact.upload containerfolder=report;artifactname=report;]${out}`));
    assert.equal(sandboxExists(name), false);

    const raw = startRaw(newName(), { script: 'exit 7' });
    assert.equal((await raw.exited).code, 7);
  });

  test('a timeout kills the script and fails the step', async () => {
    const name = newName();
    const started = Date.now();
    const tr = await runMocked(name, { script: 'echo before; sleep 60; echo after', timeoutSeconds: '2' });
    assert.ok(Date.now() - started < 40000);
    assert.equal(tr.succeeded, false);
    assert.deepEqual(tr.errorIssues, [`The script ran past 2 s in sandbox '${name}'; it and every process it started were killed.`]);
    assert.ok(tr.stdout.includes('before') && !lines(tr).includes('after'));
    assert.ok(lines(tr).some(l => l.startsWith(`##vso[task.logissue type=error;code=SandboxCommandTimedOut]The command in sandbox '${name}' ran past 2 s`)), tr.stdout);
    assert.equal(sandboxExists(name), false);
  });

  test('keeps the sandbox on failure when asked, and says how to remove it', async () => {
    const name = newName();
    try {
      const tr = await runMocked(name, { script: 'touch evidence; exit 1', keepSandboxOnFailure: 'true' });
      assert.equal(tr.succeeded, false);
      assert.deepEqual(tr.warningIssues, [`Sandbox '${name}' was kept for debugging; Remove-AgentSandbox -Name ${name} -Force removes it.`]);
      assert.equal(sandboxExists(name), true);
    } finally {
      pwshOutput(`Import-Module AgentSandbox; Remove-AgentSandbox -Name '${name}' -Force -ErrorAction Ignore`);
    }
    assert.equal(sandboxExists(name), false);
  });

  test('the sandbox cannot issue logging commands unless allowed', async () => {
    const name = newName();
    const tr = await runMocked(name, { script: 'echo "##vso[task.setvariable variable=Injected]yes"\necho "##vso[task.complete result=Succeeded;]forged"\necho "##[group]forged"\nexit 1' });
    assert.equal(tr.succeeded, false);
    // The task library's debug lines echo the inputs; the agent obeys only the first command of a line.
    assert.ok(!lines(tr).some(l => !l.startsWith('##vso[task.debug]') && (l.includes('##vso[task.setvariable variable=Injected') || l === '##[group]forged')), tr.stdout);
    assert.ok(lines(tr).includes('#\u200B#vso[task.setvariable variable=Injected]yes'), 'shown, but not as a command');
    assert.equal(completion(tr).length, 1);

    const allowed = await runMocked(newName(), { script: 'echo "##vso[task.setvariable variable=Allowed]yes"', allowLoggingCommands: 'true' });
    assert.ok(lines(allowed).includes('##vso[task.setvariable variable=Allowed]yes'), allowed.stdout);
  });

  // The commands an agent would obey: its parser takes the first '##vso[' of a line, wherever it is.
  // Its stderr too: the agent reads both streams for them.
  const obeyed = tr => `${tr.stdout}\n${tr.stderr}`.split(/\r?\n/).map(l => l.indexOf('##vso[') < 0 ? null : l.slice(l.indexOf('##vso[') + 6).split(/[\] ]/)[0]).filter(Boolean);

  test('text of the sandbox in an error of the module is not a logging command', async () => {
    // The entry's refusal marker, written by the script itself, becomes the module's error, words and all.
    const tr = await runMocked(newName(), { script: 'echo "agentsandbox-entry: workdir: ##vso[task.uploadfile]/etc/passwd" >&2\nexit 125' });
    assert.equal(tr.succeeded, false);
    assert.ok(!obeyed(tr).includes('task.uploadfile'), `${tr.stdout}\n${tr.stderr}`);
    assert.ok(tr.stdout.includes('#\u200B#vso[task.uploadfile]/etc/passwd'), tr.stdout);
  });

  test('symbolic links the sandbox copies out are not published: the upload would follow them on the host', async () => {
    const name = newName();
    const out = path.join(temp, `out-${name}`);
    const tr = await runMocked(name, {
      script: 'mkdir -p out/sub && echo kept > out/report.txt && ln -s /etc/passwd out/leak.txt && ln -s /etc out/sub/etc',
      outputPaths: 'out', outputDirectory: out, artifactName: 'links',
    });
    assert.ok(tr.succeeded, tr.stdout);
    assert.equal(fs.readFileSync(path.join(out, 'out', 'report.txt'), 'utf8'), 'kept\n');
    for (const link of ['leak.txt', 'sub/etc']) assert.equal(fs.lstatSync(path.join(out, 'out', link), { throwIfNoEntry: false }), undefined, link);
    assert.ok(tr.stdout.includes('leak.txt'), 'the removal is said');
    assert.ok(lines(tr).includes(`##vso[artifact.upload containerfolder=links;artifactname=links;]${out}`), tr.stdout);
  });

  test('runs a script file', async () => {
    const file = path.join(temp, 'step.sh');
    fs.writeFileSync(file, 'echo "from a file: $0"\n');
    const tr = await runMocked(newName(), { scriptType: 'filePath', scriptPath: file, interpreter: '/bin/sh' });
    assert.ok(tr.succeeded, tr.stdout);
    assert.ok(lines(tr).some(l => /^from a file: \/tmp\/agentsandbox-step-\w+\.sh$/.test(l)), tr.stdout);
  });

  test('a module version that is not installed fails clearly, before any sandbox is made', async () => {
    const name = newName();
    const tr = await runMocked(name, { script: 'true', moduleVersion: '99.0.0' });
    assert.equal(tr.succeeded, false);
    assert.equal(tr.errorIssues.length, 1);
    assert.match(tr.errorIssues[0], /^AgentSandbox 99\.0\.0 is not installed on this agent \(installed here: [\d., ]+\)\. Install it before this step/);
    assert.equal(sandboxExists(name), false);
  });

  test('invalid inputs fail the step before pwsh runs', async () => {
    const tr = await runMocked(newName(), { script: 'true', memory: 'lots' });
    assert.equal(tr.succeeded, false);
    assert.deepEqual(tr.errorIssues, ["The input memory is 'lots': it must be bytes, or a number with KB, MB, GB or TB (512MB)."]);
    const missing = await runMocked(newName(), { script: 'true', pwshPath: '/nonexistent/pwsh' });
    assert.deepEqual(missing.errorIssues, ['pwsh was not found at /nonexistent/pwsh (the input pwshPath).']);
  });

  test('cancellation (SIGINT, as the agent sends) stops the script and removes the sandbox; the script is never on a command line', async () => {
    const name = newName();
    const marker = `marker-${crypto.randomBytes(6).toString('hex')}`;
    const run = startRaw(name, { script: `echo started; sleep 120 # ${marker}` });
    const deadline = Date.now() + 60000;
    // The script's own line, not a word in some other message: the signal must come once the script runs.
    const started = () => /(^|\n)started\r?\n/.test(run.output());
    while (!started() && Date.now() < deadline) await new Promise(r => setTimeout(r, 100));
    assert.ok(started(), run.output());
    const onCommandLines = fs.readdirSync('/proc').filter(p => /^\d+$/.test(p)).filter(p => {
      try { return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker); } catch { return false; }
    });
    assert.deepEqual(onCommandLines, [], 'the script text is on a command line');
    const sent = Date.now();
    run.child.kill('SIGINT');
    const { code, stdout } = await run.exited;
    assert.ok(Date.now() - sent < 15000, `took ${Date.now() - sent} ms`);
    assert.equal(code, 130);
    assert.ok(stdout.includes(`##vso[task.complete result=Cancelled;]The step was cancelled (SIGINT); sandbox '${name}' was removed.`), stdout);
    assert.equal(sandboxExists(name), false);
  });
});
