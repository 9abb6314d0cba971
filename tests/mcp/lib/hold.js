// A client that dies mid-command: connects, makes a sandbox, starts a long command, says so, and waits to
// be killed (the test sends it SIGKILL, so it closes nothing itself). Arguments: backend, name prefix.
import { connect, call } from './server.js';

const [backend, prefix] = process.argv.slice(2);
const { client, transport } = await connect(`-Backend ${backend} -NamePrefix ${prefix}`);
const created = await call(client, 'create_sandbox', {});
if (created.isError) { console.log(`FAILED ${created.text}`); process.exit(1); }
console.log(`PWSH_PID ${transport.pid}`);
console.log(`SANDBOX ${created.value.name}`);
client.callTool({ name: 'run_command', arguments: { sandbox: created.value.name, command: 'echo started; sleep 300', timeoutSeconds: 600 } }, undefined, { timeout: 600000 }).catch(() => {});
// Give the command a moment to start inside the sandbox before the test pulls the plug.
setTimeout(() => console.log('RUNNING'), 1500);
setInterval(() => {}, 1000);
