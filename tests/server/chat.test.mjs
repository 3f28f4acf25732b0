// End to end with the official openai client against `dsinfer serve --scripted`: chat and
// completions, streaming and not, reasoning, tool calls, stop strings, logprobs, n, parallel and
// cancelled requests, bad requests, limits.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, SCRIPT, metrics, waitForMetrics, postJson } from './helpers.mjs';

let srv, client;
const MODEL = 'scripted';
const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Weather of a city',
      parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } } },
    },
  },
];

before(async () => {
  srv = await startServer([
    '--scripted', JSON.stringify(SCRIPT), '--max-body-mb', '1', '--max-messages', '8', '--max-model-len', '4096',
  ]);
  client = new OpenAI({ baseURL: srv.base + '/v1', apiKey: 'unused', maxRetries: 0, timeout: 30000 });
});

after(async () => {
  const { code } = await srv.stop();
  assert.equal(code, 0, 'server exits 0 on SIGTERM');
});

async function collect(stream) {
  const out = { content: '', reasoning: '', tools: {}, finish: null, usage: null, chunks: 0 };
  for await (const chunk of stream) {
    out.chunks++;
    if (chunk.usage) out.usage = chunk.usage;
    for (const c of chunk.choices) {
      const d = c.delta ?? {};
      if (d.content) out.content += d.content;
      if (d.reasoning_content) out.reasoning += d.reasoning_content;
      for (const tc of d.tool_calls ?? []) {
        const t = (out.tools[tc.index] ??= { id: '', name: '', arguments: '' });
        if (tc.id) t.id = tc.id;
        if (tc.function?.name) t.name += tc.function.name;
        if (tc.function?.arguments) t.arguments += tc.function.arguments;
      }
      if (c.finish_reason) out.finish = c.finish_reason;
    }
  }
  return out;
}

test('models and health', async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [MODEL]);
  const h = await fetch(srv.base + '/health');
  assert.equal(h.status, 200);
  assert.equal((await h.json()).status, 'ok');
});

// DeepSeek-V4 thinks unless told not to (as DeepSeek's API); CHAT asks for chat mode, where the
// completion is the answer alone.
const CHAT = { chat_template_kwargs: { thinking: false } };

test('chat, not streamed', async () => {
  const r = await client.chat.completions.create({ model: MODEL, ...CHAT, messages: [{ role: 'user', content: 'Hi' }] });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, 'Hello! I am a scripted model.');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.usage.completion_tokens, 'Hello! I am a scripted model.'.length);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('chat, streamed, with usage', async () => {
  const s = await client.chat.completions.create({
    model: MODEL, ...CHAT, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'Hi' }],
  });
  const out = await collect(s);
  assert.equal(out.content, 'Hello! I am a scripted model.');
  assert.equal(out.reasoning, '');
  assert.equal(out.finish, 'stop');
  assert.ok(out.chunks > 5, 'streamed in pieces');
  assert.equal(out.usage.completion_tokens, out.content.length);
});

test('thinking on: reasoning_content, streamed and not', async () => {
  const req = { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], chat_template_kwargs: { thinking: true } };
  const r = await client.chat.completions.create(req);
  assert.equal(r.choices[0].message.reasoning_content, 'Let me think.');
  assert.equal(r.choices[0].message.content, 'Hello! I am a scripted model.');
  const out = await collect(await client.chat.completions.create({ ...req, stream: true }));
  assert.equal(out.reasoning, 'Let me think.');
  const byDefault = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] });
  assert.equal(byDefault.choices[0].message.reasoning_content, 'Let me think.', 'V4 thinks by default');
  assert.equal(out.content, 'Hello! I am a scripted model.');
});

test('tool call, not streamed', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, tools: TOOLS, messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
  });
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.tool_calls.length, 1);
  assert.equal(c.message.tool_calls[0].type, 'function');
  assert.equal(c.message.tool_calls[0].function.name, 'get_weather');
  assert.match(c.message.tool_calls[0].id, /^call_/);
  assert.deepEqual(JSON.parse(c.message.tool_calls[0].function.arguments), { city: 'Paris', days: 3 });
  assert.ok(!c.message.content, 'no content besides the call');
});

test('tool call streamed with reasoning, then the tool result', async () => {
  const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const out = await collect(
    await client.chat.completions.create({
      model: MODEL, tools: TOOLS, stream: true, messages, chat_template_kwargs: { thinking: true },
    }),
  );
  assert.equal(out.reasoning, 'I should call the tool.');
  assert.equal(out.content, '');
  assert.equal(out.finish, 'tool_calls');
  assert.equal(out.tools[0].name, 'get_weather');
  assert.deepEqual(JSON.parse(out.tools[0].arguments), { city: 'Paris', days: 3 });
  messages.push({
    role: 'assistant', content: null,
    tool_calls: [{ id: out.tools[0].id, type: 'function', function: { name: 'get_weather', arguments: out.tools[0].arguments } }],
  });
  messages.push({ role: 'tool', tool_call_id: out.tools[0].id, content: '{"sky": "sunny"}' });
  const r = await client.chat.completions.create({ model: MODEL, tools: TOOLS, messages });
  assert.equal(r.choices[0].message.content, 'It is sunny in Paris.');
  assert.equal(r.choices[0].finish_reason, 'stop');
});

test('tool_choice none and named', async () => {
  const messages = [{ role: 'user', content: 'weather please' }];
  const none = await client.chat.completions.create({ model: MODEL, tools: TOOLS, tool_choice: 'none', messages });
  assert.equal(none.choices[0].message.tool_calls, undefined);
  assert.equal(none.choices[0].finish_reason, 'stop');
  const named = await client.chat.completions.create({
    model: MODEL, tools: TOOLS, messages: [{ role: 'user', content: 'weather please' }],
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  assert.equal(named.choices[0].finish_reason, 'tool_calls');
  assert.equal(named.choices[0].message.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(named.choices[0].message.tool_calls[0].function.arguments), { city: 'Paris', days: 3 });
  // Named, streamed, in chat mode (the request above thinks: the forced call closes the reasoning).
  const namedStream = await collect(await client.chat.completions.create({
    model: MODEL, ...CHAT, tools: TOOLS, stream: true, messages: [{ role: 'user', content: 'weather please' }],
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  }));
  assert.equal(namedStream.finish, 'tool_calls');
  assert.equal(namedStream.tools[0].name, 'get_weather');
  assert.deepEqual(JSON.parse(namedStream.tools[0].arguments), { city: 'Paris', days: 3 });
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, tools: TOOLS, messages, tool_choice: { type: 'function', function: { name: 'nope' } } }),
    (e) => e.status === 400 && /nope/.test(e.message),
  );
});

test('stop strings, max_tokens, logprobs, n', async () => {
  const messages = [{ role: 'user', content: 'Hi' }];
  const s = await client.chat.completions.create({ model: MODEL, ...CHAT, messages, stop: ['am a'] });
  assert.equal(s.choices[0].message.content, 'Hello! I ');
  assert.equal(s.choices[0].finish_reason, 'stop');
  const streamed = await collect(await client.chat.completions.create({ model: MODEL, ...CHAT, messages, stop: 'scripted', stream: true }));
  assert.equal(streamed.content, 'Hello! I am a ');
  const l = await client.chat.completions.create({ model: MODEL, ...CHAT, messages, max_tokens: 5 });
  assert.equal(l.choices[0].message.content, 'Hello');
  assert.equal(l.choices[0].finish_reason, 'length');
  assert.equal(l.usage.completion_tokens, 5);
  const lp = await client.chat.completions.create({ model: MODEL, ...CHAT, messages, max_tokens: 4, logprobs: true, top_logprobs: 2 });
  const entries = lp.choices[0].logprobs.content;
  assert.equal(entries.length, 4);
  assert.equal(entries.map((e) => e.token).join(''), 'Hell');
  for (const e of entries) {
    assert.equal(e.top_logprobs.length, 2);
    assert.equal(e.top_logprobs[0].token, e.token);
    assert.ok(e.logprob <= 0 && e.logprob > -1e-3);
  }
  const n = await client.chat.completions.create({ model: MODEL, messages, n: 3, seed: 7 });
  assert.deepEqual(n.choices.map((c) => c.index), [0, 1, 2]);
  for (const c of n.choices) assert.equal(c.message.content, 'Hello! I am a scripted model.');
});

test('completions, streamed and not', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'abc', max_tokens: 5, temperature: 0 });
  assert.equal(r.choices[0].text, 'defgh');
  assert.equal(r.choices[0].finish_reason, 'length');
  let text = '';
  for await (const c of await client.completions.create({ model: MODEL, prompt: 'xy', max_tokens: 4, stream: true })) {
    text += c.choices[0]?.text ?? '';
  }
  assert.equal(text, 'zabc');
});

test('64 parallel streams equal the same requests one at a time; pool empty afterwards', async () => {
  const reqs = Array.from({ length: 64 }, (_, i) => ({
    model: MODEL, temperature: 0, stream: true,
    messages: [{ role: 'user', content: `echo: request number ${i} ${'x'.repeat(i % 7)}` }],
  }));
  const parallel = await Promise.all(reqs.map(async (r) => collect(await client.chat.completions.create(r))));
  const sequential = [];
  for (const r of reqs.slice(0, 64)) sequential.push(await collect(await client.chat.completions.create(r)));
  for (let i = 0; i < 64; i++) {
    assert.equal(parallel[i].content, `You said: echo: request number ${i} ${'x'.repeat(i % 7)}`);
    assert.equal(parallel[i].content, sequential[i].content);
    assert.equal(parallel[i].finish, 'stop');
  }
  const m = await waitForMetrics(srv.base, (m) => m.dsinfer_requests_running === 0);
  assert.equal(m.dsinfer_requests_running, 0);
  assert.equal(m.dsinfer_requests_waiting, 0);
  assert.equal(m.dsinfer_kv_blocks_used_by_sequences, 0);
});

test('an aborted stream frees its slot', async () => {
  const before = await metrics(srv.base);
  const ac = new AbortController();
  const s = await client.chat.completions.create(
    { model: MODEL, stream: true, messages: [{ role: 'user', content: 'Tell me a long story' }] },
    { signal: ac.signal },
  );
  let n = 0;
  try {
    for await (const _ of s) {
      if (++n === 3) {
        ac.abort();  // closes the connection
        break;
      }
    }
  } catch (e) {
    assert.ok(e.name === 'AbortError' || /abort/i.test(String(e)), String(e));
  }
  const m = await waitForMetrics(
    srv.base,
    (m) => m.dsinfer_requests_running === 0 && m.dsinfer_requests_cancelled_total > before.dsinfer_requests_cancelled_total,
  );
  assert.equal(m.dsinfer_requests_running, 0, 'slot freed');
  assert.equal(m.dsinfer_kv_blocks_used_by_sequences, 0);
  assert.ok(m.dsinfer_requests_cancelled_total > before.dsinfer_requests_cancelled_total, 'counted as cancelled');
  // A 5400-token reply at 1 ms a step would still be running had the cancel not reached the engine.
  assert.ok(m.dsinfer_generation_tokens_total - before.dsinfer_generation_tokens_total < 5000);
  const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] });
  assert.equal(r.choices[0].finish_reason, 'stop');
});

test('an abandoned non-streamed request frees its slot too', async () => {
  const before = await metrics(srv.base);
  const ac = new AbortController();
  const pending = client.chat.completions.create(
    { model: MODEL, messages: [{ role: 'user', content: 'Tell me a long story' }] }, { signal: ac.signal });
  // Abort once the engine is generating it.
  await waitForMetrics(srv.base, (m) => m.dsinfer_requests_running >= 1);
  ac.abort();
  await assert.rejects(pending, (e) => e.name === 'APIUserAbortError' || /abort/i.test(String(e)));
  const m = await waitForMetrics(
    srv.base,
    (m) => m.dsinfer_requests_running === 0 && m.dsinfer_requests_cancelled_total > before.dsinfer_requests_cancelled_total,
  );
  assert.equal(m.dsinfer_requests_running, 0, 'slot freed');
  assert.ok(m.dsinfer_requests_cancelled_total > before.dsinfer_requests_cancelled_total, 'counted as cancelled');
  assert.ok(m.dsinfer_generation_tokens_total - before.dsinfer_generation_tokens_total < 5000);
});

test('a generation that fails midway: 500 with an OpenAI error when not streamed, an error event when streamed', async () => {
  const req = { model: MODEL, messages: [{ role: 'user', content: 'Please fail midway' }], chat_template_kwargs: { thinking: false } };
  await assert.rejects(client.chat.completions.create(req), (e) => {
    assert.equal(e.status, 500);
    assert.equal(e.error?.type, 'server_error');
    assert.match(e.message, /generation failed: .*scripted model failed/);
    return true;
  });
  const raw = await fetch(`${srv.base}/v1/chat/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(req),
  });
  assert.equal(raw.status, 500);
  assert.match(raw.headers.get('content-type'), /application\/json/);
  assert.match((await raw.json()).error.message, /generation failed/);
  // Streamed: the status went out with the first chunk; the failure arrives as an error event.
  const s = await fetch(`${srv.base}/v1/chat/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ...req, stream: true }),
  });
  assert.equal(s.status, 200);
  assert.match(await s.text(), /^data: \{"error":\{.*"message":"generation failed/m);
  // The server keeps serving.
  const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] });
  assert.equal(r.choices[0].finish_reason, 'stop');
});

test('bad requests get OpenAI errors and the server keeps serving', async () => {
  const ok = { model: MODEL, messages: [{ role: 'user', content: 'Hi' }] };
  const cases = [
    ['malformed JSON', '{"model": "scripted", "messages": [', 400, null],
    ['messages of the wrong type', { model: MODEL, messages: 'hi' }, 400, 'messages'],
    ['temperature of the wrong type', { ...ok, temperature: 'hot' }, 400, 'temperature'],
    ['stream of the wrong type', { ...ok, stream: 'yes' }, 400, 'stream'],
    ['negative max_tokens', { ...ok, max_tokens: -5 }, 400, 'max_tokens'],
    ['unknown model', { ...ok, model: 'gpt-17' }, 404, 'model'],
    ['empty messages', { model: MODEL, messages: [] }, 400, 'messages'],
    ['missing messages', { model: MODEL }, 400, 'messages'],
    ['bad role', { model: MODEL, messages: [{ role: 'wizard', content: 'x' }] }, 400, 'messages[0].role'],
    ['top_p out of range', { ...ok, top_p: 1.5 }, 400, 'top_p'],
    ['too many messages', { model: MODEL, messages: Array(9).fill({ role: 'user', content: 'x' }) }, 400, 'messages'],
    ['over-long prompt', { model: MODEL, messages: [{ role: 'user', content: 'y'.repeat(5000) }] }, 400, 'messages'],
    ['prompt plus max_tokens over the context', { ...ok, max_tokens: 5000 }, 400, 'messages'],
  ];
  for (const [name, body, status, param] of cases) {
    const r = await postJson(srv.base, '/v1/chat/completions', body);
    assert.equal(r.status, status, `${name}: status (${r.text})`);
    assert.ok(r.json?.error?.message, `${name}: error.message`);
    assert.ok(r.json.error.type, `${name}: error.type`);
    assert.ok('param' in r.json.error && 'code' in r.json.error, `${name}: param and code present`);
    if (param) assert.equal(r.json.error.param, param, `${name}: param`);
    const good = await client.chat.completions.create(ok);
    assert.equal(good.choices[0].message.content, 'Hello! I am a scripted model.', `${name}: next request answered`);
  }
  const long = await postJson(srv.base, '/v1/chat/completions', cases[11][1]);
  assert.equal(long.json.error.code, 'context_length_exceeded');
  const big = await postJson(srv.base, '/v1/chat/completions', { ...ok, pad: 'z'.repeat(1_200_000) });
  assert.equal(big.status, 413);
  assert.ok(big.json.error.message.includes('bytes'));
  // The official client turns them into typed errors.
  await assert.rejects(client.chat.completions.create({ ...ok, max_tokens: -1 }), OpenAI.BadRequestError);
  await assert.rejects(client.chat.completions.create({ ...ok, model: 'nope' }), OpenAI.NotFoundError);
});
