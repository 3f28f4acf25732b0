#include "text/tokenizer.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "text/tokenizer_bpe.h"
#include "text/unicode.h"
#include "text/unicode_regex.h"

namespace dsinfer::text {

using json = nlohmann::json;

namespace {

// The GPT-2 split a ByteLevel pre-tokenizer applies when its use_regex is set.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// One pre-tokenizer step: a Split, or a ByteLevel (optional prefix space, optional GPT-2 split).
// The byte-level character mapping itself is implicit: BPE works on the raw bytes.
struct PreStep {
    std::unique_ptr<UnicodeRegex> regex;  // null: this step does not split
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;
};

// Unicode White_Space (what the reference library's \s means for lstrip/rstrip).
bool is_white_space(uint32_t cp) {
    return (cp >= 0x9 && cp <= 0xD) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

// Byte offset where the character ending just before `pos` starts (s valid UTF-8, pos > 0).
size_t prev_char_start(std::string_view s, size_t pos) {
    do --pos;
    while (pos > 0 && (static_cast<uint8_t>(s[pos]) & 0xC0) == 0x80);
    return pos;
}

bool is_word_char(std::string_view ch) {
    static const UnicodeRegex word(R"(^\w$)");
    size_t b = 0, e = 0;
    return word.find(ch, 0, b, e);
}

// Leftmost-longest matching of added-token contents (a byte trie), as Aho-Corasick with
// MatchKind::LeftmostLongest does in the reference library.
class AddedMatcher {
public:
    AddedMatcher() { root_.fill(-1); }
    bool empty() const { return nodes_.empty(); }

    void add(std::string_view content, int32_t index) {
        if (content.empty()) return;
        int32_t node = root_[static_cast<uint8_t>(content[0])];
        if (node < 0) {
            node = new_node();
            root_[static_cast<uint8_t>(content[0])] = node;
        }
        for (size_t i = 1; i < content.size(); ++i) {
            const uint8_t b = static_cast<uint8_t>(content[i]);
            int32_t c = child(node, b);
            if (c < 0) {
                c = new_node();
                nodes_[node].edges.push_back({b, c});
            }
            node = c;
        }
        if (nodes_[node].index < 0) nodes_[node].index = index;
    }

    bool find(std::string_view s, size_t from, size_t& begin, size_t& end, int32_t& index) const {
        for (size_t pos = from; pos < s.size(); ++pos) {
            int32_t node = root_[static_cast<uint8_t>(s[pos])];
            if (node < 0) continue;
            int32_t found = -1;
            size_t found_end = 0, j = pos + 1;
            while (true) {
                if (nodes_[node].index >= 0) {
                    found = nodes_[node].index;
                    found_end = j;
                }
                if (j == s.size()) break;
                node = child(node, static_cast<uint8_t>(s[j]));
                if (node < 0) break;
                ++j;
            }
            if (found >= 0) {
                begin = pos;
                end = found_end;
                index = found;
                return true;
            }
        }
        return false;
    }

private:
    struct Node {
        int32_t index = -1;
        std::vector<std::pair<uint8_t, int32_t>> edges;
    };
    int32_t new_node() {
        nodes_.emplace_back();
        return static_cast<int32_t>(nodes_.size() - 1);
    }
    int32_t child(int32_t node, uint8_t b) const {
        for (const auto& [eb, c] : nodes_[node].edges)
            if (eb == b) return c;
        return -1;
    }
    std::array<int32_t, 256> root_{};
    std::vector<Node> nodes_;
};

struct Segment {
    size_t begin, end;
    int32_t added = -1;  // index into added tokens, -1 for plain text
};

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
    throw std::runtime_error(origin + ": " + what);
}

}  // namespace

struct Tokenizer::Impl {
    std::string origin;
    BpeModel bpe;
    std::vector<PreStep> pre_steps;
    bool has_byte_level = false;
    std::vector<AddedToken> added;
    AddedMatcher raw_matcher, normalized_matcher;

    std::vector<std::string> tokens;  // id -> token string ("" for a hole)
    std::vector<uint8_t> present, special;
    std::unordered_map<std::string, int32_t> token_ids;
    std::string bytes_arena;                // decoded bytes of every token, back to back
    std::vector<uint32_t> bytes_offset;     // [vocab + 1]

    // add_special_tokens: the post-processor's single-sequence template (or bos/eos from the
    // tokenizer_config.json flags when there is no template).
    bool has_template = false;
    std::vector<std::vector<int32_t>> template_items;  // empty vector = the sequence itself
    bool add_bos = false, add_eos = false;
    int32_t bos = -1, eos = -1;

    void parse(const json& j);
    void parse_model(const json& m);
    void parse_normalizer(const json& n);
    void parse_pre_tokenizer(const json& p);
    void parse_decoder(const json& d);
    void parse_post_processor(const json& p);
    void read_config(const std::filesystem::path& cfg);
    void finish();

    void split_added(std::string_view sentence, size_t base, const AddedMatcher& matcher,
                     std::vector<Segment>& out) const;
    void pre_tokenize(std::string_view piece, size_t step, std::vector<int32_t>& out) const;
};

void Tokenizer::Impl::parse(const json& j) {
    if (!j.is_object()) fail(origin, "not a tokenizer.json object");
    if (!j.contains("model")) fail(origin, "no 'model'");
    parse_model(j.at("model"));
    parse_normalizer(j.value("normalizer", json()));
    parse_pre_tokenizer(j.value("pre_tokenizer", json()));
    if (!has_byte_level)
        fail(origin, "pre_tokenizer has no ByteLevel step: only byte-level BPE tokenizers are supported");
    parse_decoder(j.value("decoder", json()));

    for (const json& t : j.value("added_tokens", json::array())) {
        AddedToken a;
        a.id = t.at("id").get<int32_t>();
        a.content = t.at("content").get<std::string>();
        a.special = t.value("special", false);
        a.single_word = t.value("single_word", false);
        a.lstrip = t.value("lstrip", false);
        a.rstrip = t.value("rstrip", false);
        a.normalized = t.value("normalized", !a.special);
        if (a.id < 0) fail(origin, "added token '" + a.content + "' has a negative id");
        if (a.content.empty()) continue;  // ignored, as the reference library does
        added.push_back(std::move(a));
    }
    parse_post_processor(j.value("post_processor", json()));
}

void Tokenizer::Impl::parse_model(const json& m) {
    const std::string type = m.contains("type") ? m.at("type").get<std::string>() : "BPE";
    if (type != "BPE") fail(origin, "model type '" + type + "' is not supported (only byte-level BPE)");
    if (m.contains("dropout") && !m.at("dropout").is_null() && m.at("dropout").get<double>() != 0.0)
        fail(origin, "BPE dropout is not supported");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
        if (m.contains(key) && !m.at(key).is_null() && !m.at(key).get<std::string>().empty())
            fail(origin, std::string("BPE ") + key + " is not supported");
    if (m.value("byte_fallback", false)) fail(origin, "BPE byte_fallback is not supported (byte-level BPE only)");
    bpe.fuse_unk = m.value("fuse_unk", false);
    bpe.ignore_merges = m.value("ignore_merges", false);

    const json& vocab = m.at("vocab");
    if (!vocab.is_object()) fail(origin, "model.vocab is not an object");
    int32_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) max_id = std::max(max_id, it.value().get<int32_t>());
    tokens.assign(static_cast<size_t>(max_id + 1), std::string());
    present.assign(tokens.size(), 0);
    token_ids.reserve(vocab.size() * 2);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        const int32_t id = it.value().get<int32_t>();
        if (id < 0) fail(origin, "model.vocab: token '" + it.key() + "' has a negative id");
        tokens[id] = it.key();
        present[id] = 1;
        token_ids.emplace(it.key(), id);
    }
    auto vocab_id = [&](const std::string& tok) {
        auto it = token_ids.find(tok);
        return it == token_ids.end() ? -1 : it->second;
    };

    if (m.contains("unk_token") && !m.at("unk_token").is_null()) {
        const std::string unk = m.at("unk_token").get<std::string>();
        bpe.unk_id = vocab_id(unk);
        if (bpe.unk_id < 0) fail(origin, "model.unk_token '" + unk + "' is not in the vocabulary");
    }
    const ByteLevelAlphabet& alpha = ByteLevelAlphabet::get();
    for (int b = 0; b < 256; ++b) bpe.byte_id[b] = vocab_id(alpha.encode(std::string(1, static_cast<char>(b))));

    const json& merges = m.at("merges");
    bpe.merges.reserve(merges.size());
    int32_t rank = 0;
    for (const json& mj : merges) {
        std::string a, b;
        if (mj.is_string()) {
            const std::string s = mj.get<std::string>();
            const size_t sp = s.find(' ');
            if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
                fail(origin, "model.merges[" + std::to_string(rank) + "] '" + s + "' is not two tokens");
            a = s.substr(0, sp);
            b = s.substr(sp + 1);
        } else if (mj.is_array() && mj.size() == 2) {
            a = mj[0].get<std::string>();
            b = mj[1].get<std::string>();
        } else {
            fail(origin, "model.merges[" + std::to_string(rank) + "] is neither \"A B\" nor [A, B]");
        }
        const int32_t ia = vocab_id(a), ib = vocab_id(b), im = vocab_id(a + b);
        if (ia < 0 || ib < 0 || im < 0)
            fail(origin, "model.merges[" + std::to_string(rank) + "]: token '" + (ia < 0 ? a : ib < 0 ? b : a + b) +
                             "' is not in the vocabulary");
        bpe.merges.insert(ia, ib, {rank, im});
        ++rank;
    }
    if (bpe.ignore_merges) {
        std::string bytes;
        for (size_t id = 0; id < tokens.size(); ++id)
            if (present[id] && alpha.decode(tokens[id], bytes)) bpe.bytes_to_id.emplace(bytes, static_cast<int32_t>(id));
    }
}

void Tokenizer::Impl::parse_normalizer(const json& n) {
    if (n.is_null()) return;
    const std::string type = n.at("type").get<std::string>();
    if (type == "Sequence") {
        for (const json& s : n.at("normalizers")) parse_normalizer(s);
        return;
    }
    fail(origin, "normalizer '" + type + "' is not supported");
}

void Tokenizer::Impl::parse_pre_tokenizer(const json& p) {
    if (p.is_null()) fail(origin, "no pre_tokenizer: only byte-level BPE tokenizers are supported");
    const std::string type = p.at("type").get<std::string>();
    if (type == "Sequence") {
        for (const json& s : p.at("pretokenizers")) parse_pre_tokenizer(s);
    } else if (type == "Split") {
        PreStep step;
        const json& pat = p.at("pattern");
        if (pat.contains("Regex"))
            step.regex = std::make_unique<UnicodeRegex>(pat.at("Regex").get<std::string>());
        else if (pat.contains("String"))
            step.regex = std::make_unique<UnicodeRegex>(pat.at("String").get<std::string>(), /*literal=*/true);
        else
            fail(origin, "Split pattern is neither Regex nor String");
        const std::string behavior = p.at("behavior").get<std::string>();
        if (behavior == "Removed")
            step.behavior = Behavior::kRemoved;
        else if (behavior == "Isolated")
            step.behavior = Behavior::kIsolated;
        else if (behavior == "MergedWithPrevious")
            step.behavior = Behavior::kMergedWithPrevious;
        else if (behavior == "MergedWithNext")
            step.behavior = Behavior::kMergedWithNext;
        else if (behavior == "Contiguous")
            step.behavior = Behavior::kContiguous;
        else
            fail(origin, "Split behavior '" + behavior + "' is not supported");
        step.invert = p.value("invert", false);
        pre_steps.push_back(std::move(step));
    } else if (type == "ByteLevel") {
        has_byte_level = true;
        PreStep step;
        step.add_prefix_space = p.value("add_prefix_space", true);
        if (p.value("use_regex", true)) step.regex = std::make_unique<UnicodeRegex>(kGpt2Pattern);
        pre_steps.push_back(std::move(step));
    } else {
        fail(origin, "pre_tokenizer '" + type + "' is not supported");
    }
}

void Tokenizer::Impl::parse_decoder(const json& d) {
    if (d.is_null()) fail(origin, "no decoder: only the ByteLevel decoder is supported");
    const std::string type = d.at("type").get<std::string>();
    if (type == "Sequence") {
        for (const json& s : d.at("decoders")) parse_decoder(s);
        return;
    }
    if (type != "ByteLevel") fail(origin, "decoder '" + type + "' is not supported (only ByteLevel)");
}

void Tokenizer::Impl::parse_post_processor(const json& p) {
    if (p.is_null()) return;
    const std::string type = p.at("type").get<std::string>();
    if (type == "ByteLevel") return;  // offsets only
    if (type == "Sequence") {
        for (const json& s : p.at("processors")) parse_post_processor(s);
        return;
    }
    if (type != "TemplateProcessing") fail(origin, "post_processor '" + type + "' is not supported");
    has_template = true;
    const json& specials = p.value("special_tokens", json::object());
    for (const json& item : p.at("single")) {
        if (item.contains("Sequence")) {
            template_items.emplace_back();
        } else if (item.contains("SpecialToken")) {
            const std::string name = item.at("SpecialToken").at("id").get<std::string>();
            if (!specials.contains(name)) fail(origin, "post_processor: special token '" + name + "' is not defined");
            template_items.push_back(specials.at(name).at("ids").get<std::vector<int32_t>>());
        } else {
            fail(origin, "post_processor: unknown template item " + item.dump());
        }
    }
}

void Tokenizer::Impl::read_config(const std::filesystem::path& cfg) {
    std::ifstream f(cfg, std::ios::binary);
    if (!f) return;
    json c;
    try {
        c = json::parse(f);
    } catch (const json::exception& e) {
        fail(cfg.string(), std::string("invalid JSON: ") + e.what());
    }
    auto token_of = [&](const char* key) -> std::string {
        if (!c.contains(key) || c.at(key).is_null()) return {};
        const json& v = c.at(key);
        if (v.is_string()) return v.get<std::string>();
        if (v.is_object() && v.contains("content")) return v.at("content").get<std::string>();
        fail(cfg.string(), std::string(key) + " is neither a string nor an object with content");
    };
    auto lookup = [&](const std::string& tok, const char* key) {
        if (tok.empty()) return -1;
        auto it = token_ids.find(tok);
        if (it == token_ids.end()) fail(cfg.string(), std::string(key) + " '" + tok + "' is not a token");
        return it->second;
    };
    if (int32_t id = lookup(token_of("bos_token"), "bos_token"); id >= 0) bos = id;
    if (int32_t id = lookup(token_of("eos_token"), "eos_token"); id >= 0) eos = id;
    auto flag = [&](const char* key) { return c.contains(key) && c.at(key).is_boolean() && c.at(key).get<bool>(); };
    add_bos = flag("add_bos_token") && bos >= 0;
    add_eos = flag("add_eos_token") && eos >= 0;
}

void Tokenizer::Impl::finish() {
    // Added tokens take their ids over the model's (the reference library resolves them first).
    int32_t max_id = static_cast<int32_t>(tokens.size()) - 1;
    for (const AddedToken& a : added) max_id = std::max(max_id, a.id);
    tokens.resize(static_cast<size_t>(max_id + 1));
    present.resize(tokens.size(), 0);
    std::unordered_set<std::string> special_set;
    for (size_t i = 0; i < added.size(); ++i) {
        const AddedToken& a = added[i];
        tokens[a.id] = a.content;
        present[a.id] = 1;
        token_ids[a.content] = a.id;
        if (a.special) special_set.insert(a.content);
        (a.normalized ? normalized_matcher : raw_matcher).add(a.content, static_cast<int32_t>(i));
    }
    // Skipping is decided by token text, as the reference library does.
    special.assign(tokens.size(), 0);
    for (size_t id = 0; id < tokens.size(); ++id) special[id] = present[id] && special_set.count(tokens[id]);

    // The ByteLevel decoder maps a token's characters back to bytes when every one of them is in
    // the byte alphabet, and keeps the token's own UTF-8 otherwise (e.g. "<｜User｜>").
    const ByteLevelAlphabet& alpha = ByteLevelAlphabet::get();
    bytes_offset.assign(tokens.size() + 1, 0);
    std::string bytes;
    for (size_t id = 0; id < tokens.size(); ++id) {
        bytes_offset[id] = static_cast<uint32_t>(bytes_arena.size());
        if (!present[id]) continue;
        if (alpha.decode(tokens[id], bytes))
            bytes_arena += bytes;
        else
            bytes_arena += tokens[id];
    }
    bytes_offset[tokens.size()] = static_cast<uint32_t>(bytes_arena.size());

    // bos/eos when the config did not name them: the conventional names, if present as special tokens.
    auto first_special = [&](std::initializer_list<const char*> names) {
        for (const char* n : names) {
            auto it = token_ids.find(n);
            if (it != token_ids.end() && special[it->second]) return it->second;
        }
        return -1;
    };
    if (bos < 0) bos = first_special({"<｜begin▁of▁sentence｜>", "<|begin_of_text|>", "<s>", "<|startoftext|>", "<bos>"});
    if (eos < 0) eos = first_special({"<｜end▁of▁sentence｜>", "<|end_of_text|>", "</s>", "<|endoftext|>", "<eos>"});
}

// Splits `sentence` on added-token matches the way the reference library's AddedVocabulary does
// (including its single_word / lstrip / rstrip rules); offsets in `out` are relative to base.
void Tokenizer::Impl::split_added(std::string_view sentence, size_t base, const AddedMatcher& matcher,
                                  std::vector<Segment>& out) const {
    size_t start_offset = 0, pos = 0, mb = 0, me = 0;
    int32_t idx = -1;
    while (!matcher.empty() && matcher.find(sentence, pos, mb, me, idx)) {
        pos = me;  // matching resumes after the raw match, whatever is kept of it
        const AddedToken& t = added[idx];
        size_t start = mb, stop = me;
        if (t.single_word) {
            bool start_space = start == 0;
            if (!start_space) {
                const size_t p = prev_char_start(sentence, start);
                start_space = !is_word_char(sentence.substr(p, start - p));
            }
            bool stop_space = stop == sentence.size();
            if (!stop_space) {
                size_t i = stop;
                next_code_point(sentence, i);
                stop_space = !is_word_char(sentence.substr(stop, i - stop));
            }
            if (!start_space || !stop_space) continue;
        }
        if (t.lstrip) {
            size_t s = start;
            while (s > 0) {
                const size_t p = prev_char_start(sentence, s);
                size_t q = p;
                if (!is_white_space(next_code_point(sentence, q))) break;
                s = p;
            }
            start = std::max(s, start_offset);
        }
        if (t.rstrip) {
            while (stop < sentence.size()) {
                size_t q = stop;
                if (!is_white_space(next_code_point(sentence, q))) break;
                stop = q;
            }
        }
        start = std::max(start, start_offset);
        if (stop <= start) continue;
        if (start_offset < start) out.push_back({base + start_offset, base + start, -1});
        out.push_back({base + start, base + stop, idx});
        start_offset = stop;
    }
    if (start_offset < sentence.size()) out.push_back({base + start_offset, base + sentence.size(), -1});
}

void Tokenizer::Impl::pre_tokenize(std::string_view piece, size_t step, std::vector<int32_t>& out) const {
    if (piece.empty()) return;
    if (step == pre_steps.size()) {
        bpe.encode_word(piece, out);
        return;
    }
    const PreStep& st = pre_steps[step];
    if (st.add_prefix_space && piece[0] != ' ') {
        // ByteLevel's add_prefix_space applies to each piece; the prefixed copy lives on this frame.
        std::string prefixed = " ";
        prefixed += piece;
        pre_tokenize(prefixed, st.regex ? step : step + 1, out);
        return;
    }
    if (!st.regex) {
        pre_tokenize(piece, step + 1, out);
        return;
    }
    size_t prev = 0, pos = 0, mb = 0, me = 0;
    if (st.behavior == Behavior::kIsolated && !st.invert) {
        // The common case, without building a list: every match and every gap is a piece.
        while (pos <= piece.size() && st.regex->find(piece, pos, mb, me)) {
            if (mb > prev) pre_tokenize(piece.substr(prev, mb - prev), step + 1, out);
            if (me > mb) {
                pre_tokenize(piece.substr(mb, me - mb), step + 1, out);
                pos = me;
            } else {  // an empty match still splits; the search moves on by one character
                if (me == piece.size()) {
                    prev = me;
                    break;
                }
                pos = me;
                next_code_point(piece, pos);
            }
            prev = me;
        }
        if (prev < piece.size()) pre_tokenize(piece.substr(prev), step + 1, out);
        return;
    }
    struct Part {
        size_t b, e;
        bool match;
    };
    std::vector<Part> parts;
    while (pos <= piece.size() && st.regex->find(piece, pos, mb, me)) {
        if (mb > prev) parts.push_back({prev, mb, false});
        parts.push_back({mb, me, true});
        prev = me;
        if (me > mb) {
            pos = me;
        } else {
            if (me == piece.size()) break;
            pos = me;
            next_code_point(piece, pos);
        }
    }
    if (prev < piece.size()) parts.push_back({prev, piece.size(), false});
    if (st.invert)
        for (Part& p : parts) p.match = !p.match;
    std::vector<Part> pieces;
    bool previous_match = false;
    switch (st.behavior) {
        case Behavior::kRemoved:
            for (const Part& p : parts)
                if (!p.match) pieces.push_back(p);
            break;
        case Behavior::kIsolated:
            pieces = parts;
            break;
        case Behavior::kMergedWithPrevious:
            for (const Part& p : parts) {
                if (p.match && !previous_match && !pieces.empty())
                    pieces.back().e = p.e;
                else
                    pieces.push_back(p);
                previous_match = p.match;
            }
            break;
        case Behavior::kMergedWithNext:
            for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
                if (it->match && !previous_match && !pieces.empty())
                    pieces.back().b = it->b;
                else
                    pieces.push_back(*it);
                previous_match = it->match;
            }
            std::reverse(pieces.begin(), pieces.end());
            break;
        case Behavior::kContiguous:
            for (size_t i = 0; i < parts.size(); ++i) {
                if (i > 0 && parts[i].match == previous_match)
                    pieces.back().e = parts[i].e;
                else
                    pieces.push_back(parts[i]);
                previous_match = parts[i].match;
            }
            break;
    }
    for (const Part& p : pieces)
        if (p.e > p.b) pre_tokenize(piece.substr(p.b, p.e - p.b), step + 1, out);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

namespace {
std::unique_ptr<Tokenizer::Impl> build(std::string_view text, const std::string& origin,
                                       const std::filesystem::path* config) {
    auto impl = std::make_unique<Tokenizer::Impl>();
    impl->origin = origin;
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        fail(origin, std::string("invalid JSON: ") + e.what());
    }
    try {
        impl->parse(j);
        impl->finish();
    } catch (const json::exception& e) {
        fail(origin, std::string("unexpected content: ") + e.what());
    }
    if (config) {
        try {
            impl->read_config(*config);
        } catch (const json::exception& e) {
            fail(config->string(), std::string("unexpected content: ") + e.what());
        }
    }
    return impl;
}
}  // namespace

Tokenizer Tokenizer::from_json(std::string_view json_text, const std::string& origin) {
    return Tokenizer(build(json_text, origin, nullptr));
}

Tokenizer Tokenizer::load(const std::string& file_or_dir) {
    std::error_code ec;
    const std::string path = std::filesystem::is_directory(file_or_dir, ec)
                                 ? (std::filesystem::path(file_or_dir) / "tokenizer.json").string()
                                 : file_or_dir;
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error(path + ": cannot open tokenizer file");
    std::stringstream ss;
    ss << f.rdbuf();
    const std::filesystem::path cfg = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
    return Tokenizer(build(ss.str(), path, &cfg));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
    const Impl& im = *impl_;
    if (size_t bad = find_invalid_utf8(text); bad != std::string_view::npos)
        throw std::runtime_error("encode: text is not valid UTF-8 (byte " + std::to_string(bad) + ")");
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    std::vector<Segment> raw, norm;
    // Added tokens come off the raw text first (non-normalized ones), then the normalized ones off
    // what is left (the normalizer is the identity for the tokenizers accepted here).
    im.split_added(text, 0, im.raw_matcher, raw);
    for (const Segment& s : raw) {
        if (s.added >= 0) {
            ids.push_back(im.added[s.added].id);
            continue;
        }
        norm.clear();
        im.split_added(text.substr(s.begin, s.end - s.begin), s.begin, im.normalized_matcher, norm);
        for (const Segment& n : norm) {
            if (n.added >= 0)
                ids.push_back(im.added[n.added].id);
            else
                im.pre_tokenize(text.substr(n.begin, n.end - n.begin), 0, ids);
        }
    }
    if (add_special_tokens) {
        if (im.has_template) {
            std::vector<int32_t> full;
            for (const auto& item : im.template_items) {
                if (item.empty())
                    full.insert(full.end(), ids.begin(), ids.end());
                else
                    full.insert(full.end(), item.begin(), item.end());
            }
            ids = std::move(full);
        } else {
            if (im.add_bos) ids.insert(ids.begin(), im.bos);
            if (im.add_eos) ids.push_back(im.eos);
        }
    }
    return ids;
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
    const Impl& im = *impl_;
    if (id < 0 || static_cast<size_t>(id) >= im.tokens.size() || !im.present[id])
        throw std::out_of_range("token id " + std::to_string(id) + " is out of range (vocabulary size " +
                                std::to_string(im.tokens.size()) + ")");
    return std::string_view(im.bytes_arena).substr(im.bytes_offset[id], im.bytes_offset[id + 1] - im.bytes_offset[id]);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
    std::string bytes;
    bytes.reserve(ids.size() * 4);
    for (int32_t id : ids) {
        std::string_view b = token_bytes(id);
        if (skip_special && impl_->special[id]) continue;
        bytes += b;
    }
    std::string out;
    out.reserve(bytes.size());
    append_utf8_lossy(out, bytes, true);
    return out;
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
    auto it = impl_->token_ids.find(std::string(token));
    return it == impl_->token_ids.end() ? -1 : it->second;
}

std::string Tokenizer::id_to_token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= impl_->tokens.size()) return {};
    return impl_->tokens[id];
}

size_t Tokenizer::vocab_size() const { return impl_->tokens.size(); }
int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
bool Tokenizer::is_special(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[id];
}

}  // namespace dsinfer::text
