// The project's default model (models/tiny-en: a trained DeepSeek-V4 with its own tokenizer.json and
// generation_config.json) behind the whole stack: DeepSeek tokenizer, DSML chat encoder and streaming
// parser, real forward. 64 concurrent greedy chats equal the same chats one at a time.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { startServer, waitForMetrics } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const MODEL_DIR = path.join(here, '..', '..', 'models', 'tiny-en');
let srv, client;

before(async () => {
  srv = await startServer(['--model', MODEL_DIR, '--kv-cache-gb', '0.5']);
  client = new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'x', maxRetries: 0, timeout: 600000 });
});

after(async () => {
  assert.equal((await srv.stop()).code, 0);
});

async function chat(i, extra = {}) {
  const s = await client.chat.completions.create({
    model: 'tiny-en', stream: true, temperature: 0, max_tokens: 8, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: `Tell me about day ${i} of the trip.` }], ...extra,
  });
  const out = { content: '', reasoning: '', finish: null, usage: null };
  for await (const chunk of s) {
    if (chunk.usage) out.usage = chunk.usage;
    for (const c of chunk.choices) {
      out.content += c.delta?.content ?? '';
      out.reasoning += c.delta?.reasoning_content ?? '';
      if (c.finish_reason) out.finish = c.finish_reason;
    }
  }
  return out;
}

test('64 concurrent greedy streamed chats equal one-at-a-time runs; KV pool empty after', async () => {
  const idx = Array.from({ length: 64 }, (_, i) => i);
  const kw = { chat_template_kwargs: { thinking: false } };
  const parallel = await Promise.all(idx.map((i) => chat(i, kw)));
  for (const i of idx) {
    const alone = await chat(i, kw);
    assert.equal(parallel[i].content, alone.content, `chat ${i}`);
    assert.ok(parallel[i].usage.completion_tokens >= 1);
    assert.ok(['stop', 'length'].includes(parallel[i].finish));
  }
  const m = await waitForMetrics(srv.base, (m) => m.dsinfer_requests_running === 0);
  assert.equal(m.dsinfer_kv_blocks_used_by_sequences, 0);
});

test('V4 thinks by default: the text before </think> is reasoning_content', async () => {
  const r = await client.chat.completions.create({
    model: 'tiny-en', temperature: 0, max_tokens: 12, messages: [{ role: 'user', content: 'Hello there.' }],
  });
  const msg = r.choices[0].message;
  assert.equal(typeof msg.reasoning_content, 'string');
  assert.ok(msg.reasoning_content.length + (msg.content ?? '').length > 0);
  assert.ok(!(msg.content ?? '').includes('</think>'));
});
