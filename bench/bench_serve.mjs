#!/usr/bin/env node
// Load benchmark of a running `dsinfer serve` (not a test): at each concurrency level, that many
// clients send streaming chat requests back to back for a fixed number of requests; reports output
// throughput, time to first token and inter-token latency (p50/p99).
//
//   node bench/bench_serve.mjs --url http://127.0.0.1:8000 [--model NAME] [--levels 1,4,16,64]
//        [--requests 64] [--max-tokens 64] [--prompt-chars 200] [--api-key K]
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const url = args.url ?? 'http://127.0.0.1:8000';
const levels = (args.levels ?? '1,4,16,64').split(',').map(Number);
const perLevel = Number(args.requests ?? 64);
const maxTokens = Number(args['max-tokens'] ?? 64);
const promptChars = Number(args['prompt-chars'] ?? 200);
const headers = { 'Content-Type': 'application/json' };
if (args['api-key']) headers.Authorization = `Bearer ${args['api-key']}`;

async function modelName() {
  if (args.model) return args.model;
  const r = await fetch(`${url}/v1/models`, { headers });
  return (await r.json()).data[0].id;
}

async function one(model, i) {
  const t0 = performance.now();
  const body = {
    // logprobs makes every token its own chunk, so chunk times are token times (even for tokens
    // without text); usage gives the exact token count.
    model, stream: true, max_tokens: maxTokens, temperature: 0, ignore_eos: true, logprobs: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: `Request ${i}. ` + 'lorem ipsum '.repeat(promptChars / 12) }],
  };
  const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify(body) });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const times = [];
  let tokens = 0;
  const dec = new TextDecoder();
  let buf = '';
  for await (const part of res.body) {
    buf += dec.decode(part, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      if (j.usage) tokens = j.usage.completion_tokens;
      const n = j.choices?.[0]?.logprobs?.content?.length ?? 0;
      for (let q = 0; q < n; q++) times.push(performance.now());
    }
  }
  return { t0, times, tokens, end: performance.now() };
}

const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

const model = await modelName();
console.log(`server ${url}, model ${model}, ${perLevel} requests per level, max_tokens ${maxTokens}, prompt ~${promptChars} chars`);
console.log('concurrency | req/s | output tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms');
for (const c of levels) {
  let next = 0;
  const results = [];
  const start = performance.now();
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next < perLevel) results.push(await one(model, next++));
    }),
  );
  const wall = (performance.now() - start) / 1000;
  const ttft = results.map((r) => r.times[0] - r.t0);
  const itl = results.flatMap((r) => r.times.slice(1).map((t, i) => t - r.times[i]));
  const toks = results.reduce((a, r) => a + r.tokens, 0);
  const f = (x) => x.toFixed(1);
  console.log(`${c} | ${f(results.length / wall)} | ${f(toks / wall)} | ${f(pct(ttft, 50))} | ${f(pct(ttft, 99))} | ${f(pct(itl, 50))} | ${f(pct(itl, 99))}`);
}
