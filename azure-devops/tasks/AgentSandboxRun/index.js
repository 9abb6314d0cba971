'use strict';
// The AgentSandboxRun task: drives the AgentSandbox module through pwsh (run.ps1) and turns what happened
// into the step's result. Inputs go to pwsh in a file, never on its command line, where other users could read them.
const cp = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const tl = require('azure-pipelines-task-lib/task');

// How long pwsh gets to remove the sandbox after a cancellation before it is killed (the agent sends
// SIGTERM 7.5 s after SIGINT and kills the handler 2.5 s later).
const STOP_GRACE_MS = 9000;

function findOnPath(names) {
  for (const dir of (process.env.PATH || '').split(path.delimiter).filter(Boolean)) {
    for (const name of names) {
      const candidate = path.join(dir, name);
      try { fs.accessSync(candidate, fs.constants.X_OK); return candidate; } catch { /* next */ }
    }
  }
  return null;
}

function readInputs() {
  const scriptType = tl.getInput('scriptType') || 'inline';
  const number = (name, test, what) => {
    const value = (tl.getInput(name) || '').trim();
    if (value && !test(value)) throw new Error(`The input ${name} is '${value}': it must be ${what}.`);
    return value;
  };
  const inputs = {
    scriptType,
    script: scriptType === 'inline' ? tl.getInput('script', true) : null,
    scriptPath: scriptType === 'filePath' ? tl.getInput('scriptPath', true) : null,
    interpreter: tl.getInput('interpreter') || '/bin/sh',
    backend: tl.getInput('backend') || 'Auto',
    isolation: tl.getInput('isolation') || '',
    image: tl.getInput('image') || '',
    memory: number('memory', v => /^\d+(\.\d+)?\s*(KB|MB|GB|TB)?$/i.test(v), 'bytes, or a number with KB, MB, GB or TB (512MB)'),
    cpuCount: number('cpuCount', v => /^\d+(\.\d+)?$/.test(v) && Number(v) > 0, 'a positive number of CPUs (1.5)'),
    processLimit: number('processLimit', v => /^[1-9]\d*$/.test(v), 'a whole number above 0'),
    network: tl.getInput('network') || 'None',
    timeoutSeconds: number('timeoutSeconds', v => /^[1-9]\d*$/.test(v), 'a whole number of seconds above 0'),
    workingDirectory: tl.getInput('workingDirectory') || '',
    outputPaths: (tl.getInput('outputPaths') || '').split(/\r?\n/).map(s => s.trim()).filter(Boolean),
    outputDirectory: tl.getInput('outputDirectory') || '',
    artifactName: (tl.getInput('artifactName') || '').trim(),
    keepOnFailure: tl.getBoolInput('keepSandboxOnFailure'),
    moduleVersion: number('moduleVersion', v => /^\d+(\.\d+){1,3}$/.test(v), 'a version such as 0.1.0'),
    sandboxName: number('sandboxName', v => /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(v), 'letters, digits, _ . and -, starting with a letter or digit'),
    pwshPath: tl.getInput('pwshPath') || '',
    allowLoggingCommands: tl.getBoolInput('allowLoggingCommands'),
  };
  if (inputs.scriptPath && !fs.statSync(inputs.scriptPath, { throwIfNoEntry: false })?.isFile()) {
    throw new Error(`The script file ${inputs.scriptPath} does not exist.`);
  }
  if (inputs.workingDirectory && !fs.statSync(inputs.workingDirectory, { throwIfNoEntry: false })?.isDirectory()) {
    throw new Error(`The folder to copy in, ${inputs.workingDirectory}, does not exist.`);
  }
  return inputs;
}

function findPwsh(configured) {
  if (configured) {
    if (!fs.existsSync(configured)) throw new Error(`pwsh was not found at ${configured} (the input pwshPath).`);
    return configured;
  }
  const found = findOnPath(process.platform === 'win32' ? ['pwsh.exe'] : ['pwsh']);
  if (!found) throw new Error('PowerShell 7 (pwsh) was not found on PATH: install it on the agent, or give its path in the input pwshPath. (Windows PowerShell cannot run the module\'s Linux backends, and the task needs pwsh on Windows too.)');
  return found;
}

function removeLeftover(pwsh, name) {
  // The last resort when pwsh did not remove the sandbox itself (it was killed, or died).
  const script = `Import-Module AgentSandbox; if (Get-AgentSandbox -Name '${name}' -ErrorAction Ignore) { Remove-AgentSandbox -Name '${name}' -Force }`;
  const r = cp.spawnSync(pwsh, ['-NoLogo', '-NoProfile', '-NonInteractive', '-Command', '-'], { input: script, stdio: ['pipe', 'inherit', 'inherit'], timeout: 60000 });
  return r.status === 0;
}

async function run() {
  let inputs;
  let pwsh;
  try {
    inputs = readInputs();
    pwsh = findPwsh(inputs.pwshPath);
  } catch (e) {
    tl.setResult(tl.TaskResult.Failed, e.message);
    process.exitCode = 1;
    return;
  }

  const random = crypto.randomBytes(4).toString('hex');
  const name = inputs.sandboxName || `azp-${tl.getVariable('Build.BuildId') || 'local'}-${random}`;
  tl.setVariable('SandboxName', name, false, true);
  const temp = tl.getVariable('Agent.TempDirectory') || os.tmpdir();
  const work = fs.mkdtempSync(path.join(temp, 'agentsandbox-'));
  fs.chmodSync(work, 0o700);
  const scriptFile = path.join(work, 'script');
  if (inputs.scriptType === 'inline') fs.writeFileSync(scriptFile, inputs.script.replace(/\r\n/g, '\n') + '\n', { mode: 0o600 });
  else fs.copyFileSync(inputs.scriptPath, scriptFile);
  const config = {
    ...inputs,
    name,
    scriptFile,
    resultFile: path.join(work, 'result.json'),
    outputDirectory: inputs.outputDirectory || path.join(temp, `agentsandbox-${name}-out`),
  };
  delete config.script;
  const configFile = path.join(work, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify(config), { mode: 0o600 });

  let cancelled = null;
  let child = null;
  const onSignal = signal => {
    if (!cancelled) console.log(`Cancelled (${signal}): stopping the script and removing sandbox '${name}'.`);
    cancelled = cancelled || signal;
    if (!child || child.exitCode !== null) return;
    child.kill('SIGINT');
    setTimeout(() => { if (child.exitCode === null) child.kill('SIGKILL'); }, STOP_GRACE_MS).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let code;
  try {
    child = cp.spawn(pwsh, ['-NoLogo', '-NoProfile', '-NonInteractive', '-File', path.join(__dirname, 'run.ps1'), '-ConfigPath', configFile],
      { stdio: ['ignore', 'inherit', 'inherit'], env: process.env });
    code = await new Promise(resolve => {
      child.on('error', e => { console.log(`pwsh could not be started: ${e.message}`); resolve(-1); });
      child.on('exit', (c, s) => resolve(c === null ? `signal ${s}` : c));
    });
    finish(readResult(config.resultFile), code, inputs, config, name, pwsh, cancelled);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function readResult(file) {
  try { return JSON.parse(fs.readFileSync(file, 'utf8')); } catch { return null; }
}

function finish(result, code, inputs, config, name, pwsh, cancelled) {
  let removed = !result || !result.created || result.removed;
  if (result && result.created && !result.removed && !result.kept) {
    removed = removeLeftover(pwsh, name);
    if (!removed) tl.warning(`Sandbox '${name}' may not have been removed: Remove-AgentSandbox -Name ${name} -Force removes it.`);
  }
  if (result && result.copied && result.copied.length && inputs.artifactName) {
    tl.command('artifact.upload', { containerfolder: inputs.artifactName, artifactname: inputs.artifactName }, config.outputDirectory);
  }
  if (cancelled) {
    tl.setResult(tl.TaskResult.Cancelled, `The step was cancelled (${cancelled}); sandbox '${name}' ${removed ? 'was removed' : 'may be left'}.`);
    process.exitCode = 130;
    return;
  }
  process.exitCode = 1;
  if (!result || !result.finished) {
    tl.setResult(tl.TaskResult.Failed, `pwsh ended (${code}) before the step was done; see the log above.`);
    return;
  }
  if (result.kept) {
    tl.warning(`Sandbox '${name}' was kept for debugging; Remove-AgentSandbox -Name ${name} -Force removes it.`);
  }
  if (result.error) {
    tl.setResult(tl.TaskResult.Failed, result.error);
  } else if (result.timedOut) {
    tl.setResult(tl.TaskResult.Failed, `The script ran past ${inputs.timeoutSeconds} s in sandbox '${name}'; it and every process it started were killed.`);
    process.exitCode = result.exitCode || 1;
  } else if (result.exitCode !== 0) {
    tl.setResult(tl.TaskResult.Failed, `The script exited with code ${result.exitCode} in sandbox '${name}'.`);
    process.exitCode = result.exitCode;
  } else {
    tl.setResult(tl.TaskResult.Succeeded, `The script succeeded in sandbox '${name}'.`);
    process.exitCode = 0;
  }
}

run().catch(e => { tl.setResult(tl.TaskResult.Failed, e.message); process.exitCode = 1; });
