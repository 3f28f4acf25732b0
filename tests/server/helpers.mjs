// Starts `dsinfer serve` on 127.0.0.1 with a free port and stops it; shared by the end-to-end tests.
import { spawn } from 'node:child_process';

export const BIN = process.env.DSINFER_BINARY;
if (!BIN) throw new Error('DSINFER_BINARY must name the dsinfer binary (ctest sets it)');

const TOOL_REPLY =
  'I should call the tool.</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n' +
  '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n' +
  '<｜DSML｜parameter name="days" string="false">3</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>';

export const SCRIPT = {
  replies: [
    { when: 'weather', reply: TOOL_REPLY },
    { when: '<tool_result>', reply: 'The tool answered.</think>It is sunny in Paris.' },
    { when: 'long story', reply: 'Once upon a time. '.repeat(300) },
    { when: 'echo:', reply: '{{echo}}' },
    { when: 'fail midway', reply: 'A partial answer {{fail}}' },
  ],
  default_reply: 'Let me think.</think>Hello! I am a scripted model.',
  step_delay_ms: 1,
  max_context: 8192,
};

export async function startServer(args = [], env = {}) {
  const proc = spawn(BIN, ['serve', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DSINFER_API_KEY: '', ...env },
  });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const port = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('server did not start in 20 s: ' + stderr)), 20000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening: ${stderr}`));
    });
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    proc,
    port,
    base,
    exited,
    stderr: () => stderr,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

// Prometheus text -> {name: value} for unlabelled samples.
export async function metrics(base, headers = {}) {
  const text = await (await fetch(`${base}/metrics`, { headers })).text();
  const m = {};
  for (const line of text.split('\n')) {
    const r = line.match(/^([a-z_]+) ([0-9.e+-]+)$/);
    if (r) m[r[1]] = Number(r[2]);
  }
  return m;
}

// Waits (bounded) until pred(metrics) holds; returns the last metrics.
export async function waitForMetrics(base, pred, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  let m;
  for (;;) {
    m = await metrics(base);
    if (pred(m)) return m;
    if (Date.now() > deadline) return m;
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function postJson(base, path, body, headers = {}) {
  const res = await fetch(base + path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  let json = null;
  const text = await res.text();
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, json, text };
}
