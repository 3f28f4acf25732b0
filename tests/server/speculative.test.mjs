// `dsinfer serve --speculative K` on the default model (models/tiny-en, whose MTP block drafts): greedy
// answers, streamed or not, batched or alone, are those of a server without speculation (logprobs
// included); a seeded sampled answer does not depend on the batch; /metrics counts drafts. And the
// options that cannot work are refused at start with a clear message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { BIN, SCRIPT, startServer, metrics } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const MODEL_DIR = path.join(here, '..', '..', 'models', 'tiny-en');
let spec, plain, cs, cp;

before(async () => {
  spec = await startServer(['--model', MODEL_DIR, '--kv-cache-gb', '0.25', '--speculative', '3']);
  plain = await startServer(['--model', MODEL_DIR, '--kv-cache-gb', '0.25']);
  cs = new OpenAI({ baseURL: spec.base + '/v1', apiKey: 'x', maxRetries: 0, timeout: 300000 });
  cp = new OpenAI({ baseURL: plain.base + '/v1', apiKey: 'x', maxRetries: 0, timeout: 300000 });
});

after(async () => {
  assert.equal((await spec.stop()).code, 0);
  assert.equal((await plain.stop()).code, 0);
});

const ask = (i, extra = {}) => ({
  model: 'tiny-en', max_tokens: 24, temperature: 0, chat_template_kwargs: { thinking: false },
  messages: [{ role: 'user', content: `Write about the ${i}th mountain.` }], ...extra,
});

async function streamed(client, req) {
  const s = await client.chat.completions.create({ ...req, stream: true });
  let content = '', finish = null;
  for await (const chunk of s)
    for (const c of chunk.choices) {
      content += c.delta?.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  return { content, finish };
}

test('greedy with speculation equals greedy without: batched and alone, streamed and not, logprobs too', async () => {
  const idx = Array.from({ length: 12 }, (_, i) => i);
  const batched = await Promise.all(idx.map((i) => streamed(cs, ask(i))));
  for (const i of idx) {
    const ref = await streamed(cp, ask(i));
    assert.equal(batched[i].content, ref.content, `chat ${i}`);
    assert.equal(batched[i].finish, ref.finish);
  }
  const lp = { logprobs: true, top_logprobs: 2, stop: ['.'] };
  const a = await cs.chat.completions.create(ask(3, lp));
  const b = await cp.chat.completions.create(ask(3, lp));
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  assert.deepEqual(a.choices[0].logprobs, b.choices[0].logprobs);
  assert.equal(a.usage.completion_tokens, b.usage.completion_tokens);
  const m = await metrics(spec.base);
  assert.ok(m.dsinfer_spec_draft_tokens_total > 0, 'drafts proposed');
  assert.ok(m.dsinfer_spec_draft_accepted_tokens_total > 0, 'drafts accepted');
  assert.ok(m.dsinfer_spec_draft_accepted_tokens_total <= m.dsinfer_spec_draft_tokens_total);
  assert.equal(m.dsinfer_kv_blocks_used_by_sequences, 0);
});

test('a seeded sampled answer with speculation does not depend on the batch', async () => {
  const req = ask(7, { temperature: 0.9, top_p: 0.95, seed: 1234, max_tokens: 32 });
  const alone = await cs.chat.completions.create(req);
  const [together] = await Promise.all([
    cs.chat.completions.create(req),
    ...[1, 2, 3].map((i) => cs.chat.completions.create(ask(i, { temperature: 1, seed: i }))),
  ]);
  assert.equal(together.choices[0].message.content, alone.choices[0].message.content);
});

function refusal(args) {
  return new Promise((resolve) => {
    const p = spawn(BIN, ['serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
      if (/listening on/.test(out)) p.kill('SIGTERM');
    });
    p.stderr.on('data', (d) => (out += d));
    p.once('exit', (code) => resolve({ code, out }));
  });
}

test('--speculative is refused for a model without an MTP block', async () => {
  const r = await refusal(['--scripted', JSON.stringify(SCRIPT), '--speculative', '2']);
  assert.notEqual(r.code, 0);
  assert.match(r.out, /--speculative: .*no draft/);
});

test('--device cuda: refused clearly by a CPU-only build or a machine without a GPU', async () => {
  const r = await refusal(['--model', MODEL_DIR, '--device', 'cuda']);
  if (r.code !== 0) {
    assert.match(r.out, /--device cuda: this dsinfer was built without the CUDA backend|cuda: no usable CUDA device/);
  } else {
    assert.match(r.out, /listening on/);  // a CUDA build on a GPU machine
  }
  const bad = await refusal(['--model', MODEL_DIR, '--device', 'tpu']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.out, /--device 'tpu': expected cpu or cuda/);
});
