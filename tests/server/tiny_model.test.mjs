// The real model path: `dsinfer serve --model tests/data/dsv4-tiny-flash` (random weights, vocabulary
// 1024; text maps to ids byte by byte). 64 concurrent greedy streams produce the same tokens as the
// same requests one at a time, and the KV pool is back to empty afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { startServer, waitForMetrics } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const MODEL_DIR = path.join(here, '..', 'data', 'dsv4-tiny-flash');
let srv, client;

before(async () => {
  srv = await startServer(['--model', MODEL_DIR, '--kv-cache-gb', '0.25', '--max-batch-tokens', '512']);
  client = new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'x', maxRetries: 0, timeout: 120000 });
});

after(async () => {
  assert.equal((await srv.stop()).code, 0);
});

async function run(i) {
  const s = await client.chat.completions.create({
    model: 'dsv4-tiny-flash', stream: true, temperature: 0, max_tokens: 4, logprobs: true,
    messages: [{ role: 'user', content: `Question ${i}: ${'abcdefgh'.slice(0, 1 + (i % 8))}?` }],
  });
  const tokens = [];
  let finish = null;
  for await (const chunk of s) {
    for (const c of chunk.choices) {
      for (const e of c.logprobs?.content ?? []) tokens.push(e.token === '' ? '?' : e.token);
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { tokens, finish };
}

test('64 concurrent greedy streams equal one-at-a-time runs; KV pool empty after', async () => {
  const idx = Array.from({ length: 64 }, (_, i) => i);
  const parallel = await Promise.all(idx.map(run));
  const m = await waitForMetrics(srv.base, (m) => m.dsinfer_requests_running === 0);
  assert.equal(m.dsinfer_kv_blocks_used_by_sequences, 0);
  for (const i of idx) {
    assert.ok(parallel[i].finish === 'length' || parallel[i].finish === 'stop');
    const alone = await run(i);
    assert.deepEqual(parallel[i].tokens, alone.tokens, `request ${i}`);
  }
  const after = await waitForMetrics(srv.base, (m) => m.dsinfer_requests_running === 0);
  assert.equal(after.dsinfer_requests_running, 0);
  assert.equal(after.dsinfer_requests_waiting, 0);
  assert.equal(after.dsinfer_kv_blocks_used_by_sequences, 0);
  assert.ok(after.dsinfer_generation_tokens_total >= 64 * 2);
});

test('a prompt with ids beyond the vocabulary is a 400, not a crash', async () => {
  const r = await fetch(srv.base + '/v1/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'dsv4-tiny-flash', prompt: [5, 7, 4000], max_tokens: 2 }),
  });
  assert.equal(r.status, 400);
  assert.match((await r.json()).error.message, /vocabulary of 1024/);
  const ok = await client.completions.create({ model: 'dsv4-tiny-flash', prompt: [5, 7, 9], max_tokens: 2, temperature: 0 });
  assert.equal(ok.usage.completion_tokens, 2);
});

test('with the DeepSeek tokenizer: ids beyond the tiny vocabulary are a clear 400, small ones run', async () => {
  const tok = path.join(here, '..', 'data', 'tokenizer', 'dsv4-tokenizer.json');
  const s2 = await startServer(['--model', MODEL_DIR, '--tokenizer', tok, '--kv-cache-gb', '0.1']);
  try {
    const c2 = new OpenAI({ baseURL: s2.base + '/v1', apiKey: 'x', maxRetries: 0 });
    // The chat markers (<｜User｜> = 128803) are outside the tiny model's 1024 ids.
    await assert.rejects(
      c2.chat.completions.create({ model: 'dsv4-tiny-flash', messages: [{ role: 'user', content: 'Hi' }] }),
      (e) => e.status === 400 && /128803.*vocabulary of 1024/.test(e.message),
    );
    const r = await c2.completions.create({ model: 'dsv4-tiny-flash', prompt: 'a b c', max_tokens: 3, temperature: 0 });
    assert.equal(r.usage.prompt_tokens, 3);
    assert.equal(r.usage.completion_tokens, 3);
  } finally {
    assert.equal((await s2.stop()).code, 0);
  }
});
