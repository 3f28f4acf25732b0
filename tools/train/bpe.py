"""Byte-level BPE with DeepSeek's pre-tokenizer: trainer, encoder and tokenizer.json writer.

The pre-tokenizer (three Split regexes, then ByteLevel without its own regex) and the decoder are taken verbatim
from DeepSeek's tokenizer.json; only the vocabulary and merges are learnt here. Ids 0, 1, 2 are DeepSeek's
BOS / EOS / pad, the 256 byte symbols and the merges follow, and DeepSeek's other added tokens (chat roles,
<think>, ｜DSML｜, placeholders, ...) take the top ids, in DeepSeek's order, so the chat format works unchanged.
Needs the `regex` module (Unicode classes \\p{N}, \\p{L}, ...).
"""
import collections
import heapq
import json

import regex

SPLIT_PATTERNS = None  # filled from the reference tokenizer.json by load_reference()
REFERENCE = None


def load_reference(path):
    global SPLIT_PATTERNS, REFERENCE
    with open(path, encoding="utf-8") as f:
        REFERENCE = json.load(f)
    pre = REFERENCE["pre_tokenizer"]["pretokenizers"]
    SPLIT_PATTERNS = [regex.compile(p["pattern"]["Regex"]) for p in pre if p["type"] == "Split"]
    return REFERENCE


def bytes_to_unicode():
    # GPT-2 byte <-> printable character table used by the ByteLevel pre-tokenizer
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_CHAR = bytes_to_unicode()
CHAR_BYTE = {c: b for b, c in BYTE_CHAR.items()}


def split_isolated(pattern, pieces):
    out = []
    for s in pieces:
        pos = 0
        for m in pattern.finditer(s):
            if m.start() > pos:
                out.append(s[pos:m.start()])
            if m.end() > m.start():
                out.append(m.group())
            pos = m.end()
        if pos < len(s):
            out.append(s[pos:])
    return out


def pretokenize(text):
    pieces = [text]
    for p in SPLIT_PATTERNS:
        pieces = split_isolated(p, pieces)
    return ["".join(BYTE_CHAR[b] for b in s.encode("utf-8")) for s in pieces]


def train(lines, n_merges):
    """Classic BPE: repeatedly merge the most frequent adjacent pair (ties: lexicographically smallest)."""
    counts = collections.Counter()
    for line in lines:
        counts.update(pretokenize(line))
    words = [list(w) for w in counts]
    freq = [counts[w] for w in counts]
    pair_count = collections.Counter()
    where = collections.defaultdict(set)
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_count[(a, b)] += freq[i]
            where[(a, b)].add(i)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < n_merges and heap:
        c, p = heapq.heappop(heap)
        if -c != pair_count.get(p, 0) or c == 0:
            continue  # stale heap entry
        merges.append(p)
        a, b = p
        ab = a + b
        changed = collections.Counter()
        for i in list(where[p]):
            w = words[i]
            f = freq[i]
            for x, y in zip(w, w[1:]):
                changed[(x, y)] -= f
            j = 0
            nw = []
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    nw.append(ab)
                    j += 2
                else:
                    nw.append(w[j])
                    j += 1
            words[i] = nw
            for x, y in zip(nw, nw[1:]):
                changed[(x, y)] += f
                where[(x, y)].add(i)
        for q, d in changed.items():
            if d == 0:
                continue
            pair_count[q] += d
            if pair_count[q] > 0:
                heapq.heappush(heap, (-pair_count[q], q))
        pair_count[p] = 0
        del where[p]
    return merges


def build_tokenizer_json(merges, vocab_size):
    """A tokenizer.json of the same kind as DeepSeek's, with this vocabulary."""
    ref = REFERENCE
    added = sorted(ref["added_tokens"], key=lambda t: t["id"])
    head, tail = added[:3], added[3:]  # BOS, EOS, pad keep ids 0..2; the rest go to the top
    assert [t["content"] for t in head] == ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"]
    vocab = {t["content"]: t["id"] for t in head}
    for b in sorted(BYTE_CHAR, key=lambda b: BYTE_CHAR[b]):
        vocab[BYTE_CHAR[b]] = len(vocab)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    first_tail = vocab_size - len(tail)
    assert len(vocab) == first_tail, (len(vocab), first_tail)
    new_added = [dict(t) for t in head]
    for i, t in enumerate(tail):
        t = dict(t)
        t["id"] = first_tail + i
        new_added.append(t)
    out = {
        "version": ref["version"],
        "truncation": None,
        "padding": None,
        "added_tokens": new_added,
        "normalizer": ref["normalizer"],
        "pre_tokenizer": ref["pre_tokenizer"],
        "post_processor": ref["post_processor"],
        "decoder": ref["decoder"],
        "model": dict(ref["model"], vocab=vocab, merges=[f"{a} {b}" for a, b in merges]),
    }
    return out


class Encoder:
    """Encodes plain text (no special-token matching) exactly as the BPE model of tokenizer.json does."""

    def __init__(self, tok_json):
        self.vocab = tok_json["model"]["vocab"]
        self.ranks = {tuple(m.split(" ")): i for i, m in enumerate(tok_json["model"]["merges"])}
        self.cache = {}
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        for t in tok_json["added_tokens"]:
            self.id_to_token[t["id"]] = t["content"]

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        w = list(word)
        while len(w) > 1:
            best = None
            for i in range(len(w) - 1):
                r = self.ranks.get((w[i], w[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            a, b = w[best[1]], w[best[1] + 1]
            nw, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    nw.append(a + b)
                    j += 2
                else:
                    nw.append(w[j])
                    j += 1
            w = nw
        ids = [self.vocab[s] for s in w]
        self.cache[word] = ids
        return ids

    def encode(self, text):
        ids = []
        for piece in pretokenize(text):
            ids.extend(self.bpe(piece))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            t = self.id_to_token[i]
            if all(c in CHAR_BYTE for c in t) and i > 2 and i < len(self.vocab):
                out.extend(CHAR_BYTE[c] for c in t)
            else:
                out.extend(t.encode("utf-8"))
        return out.decode("utf-8", errors="replace")
