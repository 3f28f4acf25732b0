// API key, the concurrency limit, and graceful shutdown on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, SCRIPT, postJson } from './helpers.mjs';

const MODEL = 'scripted';
const hi = { model: MODEL, messages: [{ role: 'user', content: 'Hi' }] };

test('--api-key guards every route but /health', async () => {
  const srv = await startServer(['--scripted', JSON.stringify(SCRIPT), '--api-key', 'sekret']);
  try {
    assert.equal((await fetch(srv.base + '/health')).status, 200);
    for (const path of ['/v1/models', '/metrics']) {
      const r = await fetch(srv.base + path);
      assert.equal(r.status, 401, path);
      assert.equal((await r.json()).error.code, 'invalid_api_key');
    }
    const wrong = await postJson(srv.base, '/v1/chat/completions', hi, { Authorization: 'Bearer nope' });
    assert.equal(wrong.status, 401);
    await assert.rejects(
      new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'bad', maxRetries: 0 }).chat.completions.create(hi),
      OpenAI.AuthenticationError,
    );
    const good = new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'sekret', maxRetries: 0 });
    const r = await good.chat.completions.create(hi);
    assert.equal(r.choices[0].message.content, 'Hello! I am a scripted model.');
  } finally {
    assert.equal((await srv.stop()).code, 0);
  }
});

test('DSINFER_API_KEY works like --api-key', async () => {
  const srv = await startServer(['--scripted', JSON.stringify(SCRIPT)], { DSINFER_API_KEY: 'envkey' });
  try {
    assert.equal((await fetch(srv.base + '/v1/models')).status, 401);
    assert.equal((await fetch(srv.base + '/v1/models', { headers: { Authorization: 'Bearer envkey' } })).status, 200);
  } finally {
    await srv.stop();
  }
});

test('requests over --max-concurrent get 429', async () => {
  const srv = await startServer(['--scripted', JSON.stringify(SCRIPT), '--max-concurrent', '2']);
  const client = new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'x', maxRetries: 0 });
  const acs = [new AbortController(), new AbortController()];
  try {
    const streams = [];
    for (const ac of acs) {
      const s = await client.chat.completions.create(
        { model: MODEL, stream: true, messages: [{ role: 'user', content: 'a long story' }] }, { signal: ac.signal });
      const it = s[Symbol.asyncIterator]();
      await it.next();  // in flight
      streams.push(it);
    }
    const r = await postJson(srv.base, '/v1/chat/completions', hi);
    assert.equal(r.status, 429);
    assert.match(r.json.error.message, /concurrent/);
    for (const ac of acs) ac.abort();
  } finally {
    await srv.stop();
  }
});

test('SIGTERM lets in-flight streams finish, then exits 0', async () => {
  const srv = await startServer(['--scripted', JSON.stringify({ ...SCRIPT, step_delay_ms: 2 })]);
  const client = new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'x', maxRetries: 0 });
  const s = await client.chat.completions.create({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'echo: ' + 'w'.repeat(200) }] });
  let content = '';
  let finish = null;
  let signalled = false;
  for await (const chunk of s) {
    content += chunk.choices[0]?.delta?.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
    if (!signalled && content.length > 5) {
      srv.proc.kill('SIGTERM');
      signalled = true;
    }
  }
  assert.ok(signalled);
  assert.equal(content, 'You said: echo: ' + 'w'.repeat(200));
  assert.equal(finish, 'stop');
  const { code } = await srv.exited;
  assert.equal(code, 0);
});
