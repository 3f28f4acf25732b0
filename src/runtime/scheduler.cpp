#include "runtime/scheduler.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace dsinfer::runtime {

const char* finish_reason_name_impl(FinishReason r) {
    switch (r) {
        case FinishReason::none: return "none";
        case FinishReason::stop: return "stop";
        case FinishReason::length: return "length";
        case FinishReason::cancelled: return "cancelled";
        case FinishReason::error: return "error";
    }
    return "?";
}

static int64_t budget_bytes(const EngineOptions& o) { return (int64_t)(o.kv_cache_gb * 1024.0 * 1024.0 * 1024.0); }

Scheduler::Scheduler(ModelRunner& runner, const EngineOptions& opts)
    : runner_(runner),
      opts_(opts),
      geometry_(runner.kv_geometry()),
      pool_(geometry_, budget_bytes(opts), runner),
      prefix_(runner, pool_, opts.prefix_caching ? runner.prefix_granularity() : 0) {
    if (opts_.max_batch_tokens < 1) throw std::invalid_argument("max_batch_tokens must be at least 1");
    if (opts_.max_running < 1) throw std::invalid_argument("max_running must be at least 1");
    if (opts_.speculative < 0) throw std::invalid_argument("speculative must be >= 0");
    if (opts_.speculative > 0) {
        std::string why = runner.draft_unavailable();
        if (!why.empty()) throw std::invalid_argument("speculative decoding is not available: " + why);
        if (opts_.max_batch_tokens < opts_.speculative + 1)
            throw std::invalid_argument("speculative decoding with " + std::to_string(opts_.speculative) +
                                        " drafts needs max_batch_tokens >= " + std::to_string(opts_.speculative + 1));
        runner.enable_drafts();
        spec_ = opts_.speculative;
    }
    info_.vocab_size = runner.vocab_size();
    info_.eos_ids = runner.eos_ids();
    eos_ = info_.eos_ids;
    info_.kv_tokens_capacity = pool_.max_tokens_one_sequence();
    int64_t len = runner.max_context();
    if (opts_.max_model_len > 0) len = std::min(len, opts_.max_model_len);
    info_.max_model_len = std::min(len, pool_.max_tokens_one_sequence());
    stats_.kv_blocks_total = pool_.total();
    stats_.kv_tokens_capacity = pool_.max_tokens_one_sequence();
}

Status Scheduler::validate(const GenerationRequest& req) const {
    auto bad = [](std::string m) { return Status::error(StatusCode::invalid_argument, std::move(m)); };
    if (req.prompt.empty()) return bad("the prompt is empty");
    for (size_t i = 0; i < req.prompt.size(); ++i)
        if (req.prompt[i] < 0 || req.prompt[i] >= info_.vocab_size)
            return bad("prompt token " + std::to_string(i) + " has id " + std::to_string(req.prompt[i]) +
                       ", outside the model's vocabulary of " + std::to_string(info_.vocab_size));
    const int64_t n = (int64_t)req.prompt.size();
    if (n >= info_.max_model_len)
        return Status::error(StatusCode::resource_exhausted,
                             "the prompt has " + std::to_string(n) + " tokens; the context length is " +
                                 std::to_string(info_.max_model_len) + " (prompt plus at least one generated token)");
    const auto& p = req.params;
    if (p.max_tokens == 0 || p.max_tokens < -1) return bad("max_tokens must be at least 1");
    if (p.max_tokens > 0 && n + p.max_tokens > info_.max_model_len)
        return Status::error(StatusCode::resource_exhausted,
                             "the prompt (" + std::to_string(n) + " tokens) plus max_tokens (" +
                                 std::to_string(p.max_tokens) + ") exceeds the context length of " +
                                 std::to_string(info_.max_model_len));
    if (!(p.temperature >= 0)) return bad("temperature must be >= 0");
    if (!(p.top_p > 0 && p.top_p <= 1)) return bad("top_p must be in (0, 1]");
    if (!(p.min_p >= 0 && p.min_p <= 1)) return bad("min_p must be in [0, 1]");
    if (!(p.repetition_penalty > 0)) return bad("repetition_penalty must be > 0");
    if (p.logprobs > 20) return bad("logprobs must be at most 20");
    return Status::success();
}

void Scheduler::enqueue_waiting(std::unique_ptr<Sequence> s) {
    auto pos = std::upper_bound(waiting_.begin(), waiting_.end(), s->arrival,
                                [](uint64_t a, const std::unique_ptr<Sequence>& b) { return a < b->arrival; });
    waiting_.insert(pos, std::move(s));
}

void Scheduler::add(std::unique_ptr<Sequence> s) {
    s->prompt_len = (int64_t)s->tokens.size();
    const int64_t room = info_.max_model_len - s->prompt_len;
    s->max_tokens = s->params.max_tokens > 0 ? std::min<int64_t>(s->params.max_tokens, room) : room;
    if (uses_penalties(s->params)) s->history.add_prompt(s->tokens);
    stats_.prompt_tokens += s->prompt_len;
    enqueue_waiting(std::move(s));
    update_gauges();
}

// With a block store the state is created here (its blocks come with it) and holds its blocks
// physically; otherwise they are counted in s.blocks.
bool Scheduler::reserve(Sequence& s, int64_t n_tokens) {
    while (pool_.free() < pool_.need(s.state.get(), s.blocks, n_tokens) && prefix_.evict_one()) {
    }
    return pool_.reserve(s.state, s.blocks, n_tokens);
}

void Scheduler::free_state(Sequence& s) {
    s.state.reset();
    pool_.release(s.blocks);
    s.blocks = 0;
    s.computed = 0;
}

void Scheduler::preempt(size_t i) {
    std::unique_ptr<Sequence> s = std::move(running_[i]);
    running_.erase(running_.begin() + (ptrdiff_t)i);
    free_state(*s);
    s->snapshot_at = 0;
    ++stats_.preemptions;
    enqueue_waiting(std::move(s));
}

void Scheduler::finish(Sequence& s, FinishReason r, const std::string& error) {
    if (s.state || s.blocks) free_state(s);
    TokenEvent ev;
    ev.finish = r;
    ev.error = error;
    s.out->push(std::move(ev));
    if (r == FinishReason::cancelled) ++stats_.requests_cancelled;
    else if (r == FinishReason::error) ++stats_.requests_failed;
    else ++stats_.requests_finished;
}

// Snapshots are kept at granularity * 2^k and at the last boundary inside the prompt: a prompt that
// shares any prefix with an earlier one reuses at least half of the shared part (rounded down to a
// boundary), at a cost of log2(prompt / granularity) snapshots per distinct prompt.
int64_t Scheduler::next_snapshot_point(const Sequence& s) const {
    const int64_t g = prefix_.granularity();
    if (g <= 0 || s.computed >= s.prompt_len) return 0;
    const int64_t last = ((s.prompt_len - 1) / g) * g;
    for (int64_t b = g; b <= last; b = (b * 2 <= last || b == last) ? b * 2 : last) {
        if (b > s.computed && !prefix_.contains(std::span<const int32_t>(s.tokens.data(), (size_t)b))) return b;
        if (b == last) break;
    }
    return 0;
}

int64_t Scheduler::chunk_for(const Sequence& s, int64_t budget) const {
    int64_t n = std::min<int64_t>((int64_t)s.tokens.size() - s.computed, budget);
    // Stop a chunk at the snapshot boundary so the state there can be copied.
    if (s.snapshot_at > s.computed && s.computed + n > s.snapshot_at) n = s.snapshot_at - s.computed;
    return n;
}

void Scheduler::update_gauges() {
    stats_.running = (int64_t)running_.size();
    stats_.waiting = (int64_t)waiting_.size();
    stats_.kv_blocks_used = pool_.used();
    stats_.kv_blocks_snapshots = prefix_.blocks();
    stats_.prefix_snapshots = prefix_.size();
}

void Scheduler::step() {
    ++stats_.steps;
    last_plan_.clear();
    // 1. Cancellations free their slots before anything is planned.
    for (size_t i = 0; i < running_.size();) {
        if (running_[i]->out->cancel_requested()) {
            finish(*running_[i], FinishReason::cancelled);
            running_.erase(running_.begin() + (ptrdiff_t)i);
        } else {
            ++i;
        }
    }
    for (size_t i = 0; i < waiting_.size();) {
        if (waiting_[i]->out->cancel_requested()) {
            finish(*waiting_[i], FinishReason::cancelled);
            waiting_.erase(waiting_.begin() + (ptrdiff_t)i);
        } else {
            ++i;
        }
    }

    // 2. Running sequences, oldest first. Every decode gets its token: a prefill chunk (a new prompt,
    // or a preempted sequence recomputing) only takes the budget left after one token for each
    // decoding sequence behind it, so no prefill ever stalls a decode.
    struct Item {
        Sequence* seq;
        int64_t n;
    };
    std::vector<Item> plan;
    int64_t budget = opts_.max_batch_tokens;
    auto decoding = [](const Sequence& s) { return (int64_t)s.tokens.size() - s.computed == 1; };
    // A decode feeds its token and its drafts.
    auto decode_cost = [&](const Sequence& s) { return decoding(s) ? 1 + (int64_t)drafts_for(s) : 0; };
    auto decodes_after = [&](size_t i) {
        int64_t n = 0;
        for (size_t j = i + 1; j < running_.size(); ++j) n += decode_cost(*running_[j]);
        return n;
    };
    for (size_t i = 0; i < running_.size() && budget > 0;) {
        Sequence& s = *running_[i];
        int64_t n = decoding(s) ? decode_cost(s) : chunk_for(s, budget - decodes_after(i));
        if (n <= 0) {  // a prefill with no room this step
            ++i;
            continue;
        }
        bool ok = reserve(s, s.computed + n);
        while (!ok && running_.size() - 1 > i) {  // preempt the newest arrival, never an older one
            preempt(running_.size() - 1);
            ok = reserve(s, s.computed + n);
        }
        if (!ok) {  // this is the newest: it waits for others to finish
            preempt(i);
            continue;
        }
        plan.push_back({&s, n});
        budget -= n;
        ++i;
    }

    // 3. Admission, strictly in arrival order: the head of the queue blocks those behind it.
    // At most one running sequence per budget token (per 1 + drafts with speculation), so that all
    // decodes always fit in a step.
    const int64_t max_running = std::min<int64_t>(opts_.max_running, opts_.max_batch_tokens / (1 + spec_));
    while (budget > 0 && (int64_t)running_.size() < max_running && !waiting_.empty()) {
        Sequence& s = *waiting_.front();
        if (!s.state) {
            auto hit = prefix_.lookup(s.tokens);
            if (hit.length > 0) {
                s.state = std::move(hit.state);
                s.computed = hit.length;
                if (!reserve(s, hit.length)) {
                    free_state(s);
                    break;
                }
            }
        }
        s.snapshot_at = next_snapshot_point(s);
        int64_t n = chunk_for(s, budget);
        if (!reserve(s, s.computed + n)) {
            if (s.state) free_state(s);  // a restored prefix is looked up again on the next try
            break;
        }
        if (!s.state) s.state = runner_.new_state();
        stats_.prefix_hit_tokens += s.computed;  // what the restored snapshot saved (0 without one)
        plan.push_back({&s, n});
        budget -= n;
        // Keep running_ in arrival order (a preempted sequence coming back is older than some running).
        auto pos = std::upper_bound(running_.begin(), running_.end(), s.arrival,
                                    [](uint64_t a, const std::unique_ptr<Sequence>& b) { return a < b->arrival; });
        running_.insert(pos, std::move(waiting_.front()));
        waiting_.pop_front();
    }

    if (plan.empty()) {
        update_gauges();
        return;
    }

    const int64_t vocab = info_.vocab_size;
    auto runner_pick = [&](int32_t t) {
        if (t < 0 || t >= vocab)
            throw std::logic_error("the runner returned no pick (or one outside the vocabulary)");
        return t;
    };
    // Greedy without penalties or logprobs needs only the argmax: the runner finds it where the
    // logits are, and the rows never travel.
    auto argmax_only = [](const SamplingParams& p) { return is_greedy(p) && !uses_penalties(p) && p.logprobs < 0; };

    // 4. Drafts (speculative decoding): every decode with k > 0 proposes k tokens, batched.
    struct Spec {
        std::vector<int32_t> feed;           // the sampled token, then the drafts
        std::vector<std::vector<float>> q;   // the draft distributions (sampling, not greedy)
        std::unique_ptr<RunnerMark> mark;
    };
    std::vector<Spec> spec(plan.size());
    {
        std::vector<DraftItem> di;
        std::vector<size_t> which;
        for (size_t k = 0; k < plan.size(); ++k) {
            Sequence& s = *plan[k].seq;
            if (!decoding(s) || plan[k].n < 2) continue;
            spec[k].feed.push_back(s.tokens.back());
            di.push_back(
                {s.state.get(), std::span<const int32_t>(s.tokens), (int)plan[k].n - 1, argmax_only(s.params)});
            which.push_back(k);
        }
        if (!di.empty()) {
            runner_.draft(di, [&](size_t i, int round, const float* lg, int32_t am) -> int32_t {
                Spec& sp = spec[which[i]];
                Sequence& s = *plan[which[i]].seq;
                if (!lg) {  // an argmax_only item: the runner found the pick
                    if (!di[i].argmax_only) throw std::logic_error("draft: no logits for an item that asked for them");
                    sp.feed.push_back(runner_pick(am));
                    return am;
                }
                std::span<const float> row(lg, (size_t)vocab);
                // Penalties see the drafts before this one, as the main model's row will.
                const bool pen = uses_penalties(s.params);
                if (pen)
                    for (int r = 0; r < round; ++r) s.history.add_output(sp.feed[1 + (size_t)r]);
                int32_t t;
                if (is_greedy(s.params)) {
                    t = greedy_token(row, s.params, s.history);
                } else {
                    sp.q.push_back(sampling_probs(row, s.params, s.history));
                    t = draw(sp.q.back(), s.rng);
                }
                if (pen)
                    for (int r = 0; r < round; ++r) s.history.remove_output(sp.feed[1 + (size_t)r]);
                sp.feed.push_back(t);
                return t;
            });
            for (size_t k : which) {
                spec[k].mark = runner_.mark(*plan[k].seq->state, plan[k].n);
                stats_.draft_tokens += plan[k].n - 1;
            }
        }
    }

    // 5. One model step over the whole batch.
    size_t n_logits = 0, n_argmax = 0;
    for (size_t k = 0; k < plan.size(); ++k) {
        const bool last =
            !spec[k].feed.empty() || plan[k].seq->computed + plan[k].n == (int64_t)plan[k].seq->tokens.size();
        if (!last) continue;
        const size_t rows = spec[k].feed.empty() ? 1 : (size_t)plan[k].n;
        (argmax_only(plan[k].seq->params) ? n_argmax : n_logits) += rows;
    }
    logits_.resize(n_logits * (size_t)vocab);
    argmax_.assign(n_argmax, -1);
    size_t ai = 0;
    summaries_.assign(plan.size(), SummaryRequest{});
    summary_dists_.assign(plan.size(), std::nullopt);
    std::vector<StepItem> items;
    items.reserve(plan.size());
    size_t li = 0;
    for (size_t k = 0; k < plan.size(); ++k) {
        auto& it = plan[k];
        StepItem si;
        si.state = it.seq->state.get();
        const bool am = argmax_only(it.seq->params);
        if (!spec[k].feed.empty()) {
            si.tokens = spec[k].feed;
            si.n_logits = it.n;
            if (am) {
                si.argmax = argmax_.data() + ai;
                ai += (size_t)it.n;
            } else {
                si.logits = logits_.data() + vocab * li;
                li += (size_t)it.n;
            }
        } else {
            si.tokens = std::span<const int32_t>(it.seq->tokens.data() + it.seq->computed, (size_t)it.n);
            if (it.seq->computed + it.n == (int64_t)it.seq->tokens.size()) {
                if (am)
                    si.argmax = argmax_.data() + ai++;
                else
                    si.logits = logits_.data() + vocab * li++;
                if (!am && prepare_row_request(summaries_[k], it.seq->params, vocab, opts_.sample_summaries,
                                               opts_.device_draws, it.seq->rng, &summary_dists_[k]))
                    si.summary = &summaries_[k];
            }
        }
        items.push_back(si);
        last_plan_.push_back({it.seq->id, it.n});
    }
    runner_.step(items);

    // 6. Advance, snapshot, sample (verify drafts). The rows drawn without drafts are sampled first,
    // side by side when there are many: each sequence has its own random stream and history, so the
    // tokens are those of one row after another.
    std::vector<SampleResult> drawn(plan.size());
    {
        // Rows the forward summarized or drew take microseconds: drawn here; the others (a pass over the
        // vocabulary each) side by side.
        std::vector<size_t> rows, light;
        for (size_t k = 0; k < plan.size(); ++k)
            if (spec[k].feed.empty() && items[k].logits) (summaries_[k].summarized ? light : rows).push_back(k);
        auto draw_k = [&](size_t k) {
            Sequence& s = *plan[k].seq;
            drawn[k] = finish_row(std::span<const float>(items[k].logits, (size_t)vocab), vocab, s.params, s.rng,
                                  s.history, summaries_[k], summary_dists_[k]);
        };
        for (size_t k : light) draw_k(k);
        for_each_row(rows.size(), [&](size_t j) { draw_k(rows[j]); });
        stats_.sampled_rows += (int64_t)(rows.size() + light.size());
        stats_.summary_rows += (int64_t)light.size();
    }
    std::vector<uint64_t> done_ids;
    std::vector<StepItem> redo;                 // sequences that rejected a draft: their kept tokens again
    std::vector<std::vector<int32_t>> redo_tokens;
    redo_tokens.reserve(plan.size());
    for (size_t k = 0; k < plan.size(); ++k) {
        Sequence& s = *plan[k].seq;
        if (!spec[k].feed.empty()) {
            Spec& sp = spec[k];
            const int n_drafts = (int)sp.feed.size() - 1;
            const bool pen = uses_penalties(s.params);
            // Row j predicts the token after feed[0..j]; draft j + 1 is feed[j + 1].
            std::vector<int32_t> chosen;
            int accepted = 0;
            for (int j = 0; j <= n_drafts; ++j) {
                std::span<const float> row;
                if (items[k].logits) row = {items[k].logits + (size_t)j * (size_t)vocab, (size_t)vocab};
                int32_t t;
                bool ok = false;
                if (items[k].argmax) {  // greedy without penalties: the runner's pick
                    t = runner_pick(items[k].argmax[j]);
                    ok = j < n_drafts && t == sp.feed[(size_t)j + 1];
                } else if (is_greedy(s.params)) {
                    t = greedy_token(row, s.params, s.history);
                    ok = j < n_drafts && t == sp.feed[(size_t)j + 1];
                } else if (j < n_drafts) {
                    auto p = sampling_probs(row, s.params, s.history);
                    t = accept_or_resample(p, sp.q[(size_t)j], sp.feed[(size_t)j + 1], s.rng, &ok);
                } else {
                    t = draw(sampling_probs(row, s.params, s.history), s.rng);
                }
                chosen.push_back(t);
                if (!ok) break;
                ++accepted;
                if (pen) s.history.add_output(t);
            }
            if (pen)
                for (int j = 0; j < accepted; ++j) s.history.remove_output(chosen[(size_t)j]);
            stats_.draft_accepted += accepted;
            // The state holds feed[0..n_drafts]; it keeps feed[0..accepted] (the last chosen token is
            // the next one to feed).
            s.computed += 1 + accepted;
            bool done = false;
            for (size_t j = 0; j < chosen.size() && !done; ++j) {
                SampleResult r;
                r.token = chosen[j];
                if (items[k].logits)
                    fill_logprobs(std::span<const float>(items[k].logits + j * (size_t)vocab, (size_t)vocab), s.params,
                                  r);
                emit(s, std::move(r), done);
            }
            if (done) {
                done_ids.push_back(s.id);
            } else if (accepted < n_drafts) {
                runner_.rollback(*s.state, *sp.mark);
                redo_tokens.emplace_back(sp.feed.begin(), sp.feed.begin() + 1 + accepted);
                StepItem si;
                si.state = s.state.get();
                si.tokens = redo_tokens.back();
                si.logits = nullptr;
                si.n_logits = 0;
                redo.push_back(si);
            }
            continue;
        }
        s.computed += plan[k].n;
        if (s.snapshot_at > 0 && s.computed == s.snapshot_at) {
            prefix_.insert(std::span<const int32_t>(s.tokens.data(), (size_t)s.computed), *s.state);
            s.snapshot_at = next_snapshot_point(s);
        }
        if (items[k].logits || items[k].argmax) {
            bool done = false;
            if (items[k].argmax) {
                SampleResult r;
                r.token = runner_pick(*items[k].argmax);
                emit(s, std::move(r), done);
            } else {
                emit(s, std::move(drawn[k]), done);
            }
            if (done) done_ids.push_back(s.id);
        }
    }
    // The states that took back rejected drafts consume the tokens they keep (one more batch).
    if (!redo.empty()) runner_.step(redo);
    if (!done_ids.empty()) {
        std::erase_if(running_, [&](const std::unique_ptr<Sequence>& s) {
            return std::find(done_ids.begin(), done_ids.end(), s->id) != done_ids.end();
        });
    }
    update_gauges();
}

int Scheduler::drafts_for(const Sequence& s) const {
    if (spec_ == 0) return 0;
    // Never propose past max_tokens: a step emits at most drafts + 1 tokens.
    return (int)std::max<int64_t>(0, std::min<int64_t>(spec_, s.max_tokens - s.generated - 1));
}

void Scheduler::emit(Sequence& s, SampleResult r, bool& done) {
    const bool is_eos = std::find(eos_.begin(), eos_.end(), r.token) != eos_.end();
    const auto& stops = s.params.stop_token_ids;
    if ((is_eos && !s.params.ignore_eos) || std::find(stops.begin(), stops.end(), r.token) != stops.end()) {
        finish(s, FinishReason::stop);
        done = true;
        return;
    }
    s.tokens.push_back(r.token);
    ++s.generated;
    ++stats_.generated_tokens;
    if (uses_penalties(s.params)) s.history.add_output(r.token);
    TokenEvent ev;
    ev.has_token = true;
    ev.token = r.token;
    ev.logprob = r.logprob;
    ev.top = std::move(r.top);
    s.out->push(std::move(ev));
    if (s.generated >= s.max_tokens || (int64_t)s.tokens.size() >= info_.max_model_len) {
        finish(s, FinishReason::length);
        done = true;
    }
}

void Scheduler::fail_all(const std::string& message) {
    for (auto& s : running_) finish(*s, FinishReason::error, message);
    for (auto& s : waiting_) finish(*s, FinishReason::error, message);
    running_.clear();
    waiting_.clear();
    update_gauges();
}

}  // namespace dsinfer::runtime

namespace dsinfer {
const char* finish_reason_name(FinishReason r) { return runtime::finish_reason_name_impl(r); }
}  // namespace dsinfer
