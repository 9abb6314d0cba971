'use strict';
// The task run under the task library's mock runner: inputs from AGENTSANDBOX_TEST_INPUTS (JSON), the rest real.
const path = require('path');
const taskDir = path.join(__dirname, '..', 'tasks', 'AgentSandboxRun');
const { TaskMockRunner } = require(path.join(taskDir, 'node_modules', 'azure-pipelines-task-lib', 'mock-run'));

const tmr = new TaskMockRunner(path.join(taskDir, 'index.js'));
for (const [name, value] of Object.entries(JSON.parse(process.env.AGENTSANDBOX_TEST_INPUTS || '{}'))) tmr.setInput(name, String(value));
tmr.run();
