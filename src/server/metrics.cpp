#include "server/metrics.h"

#include <sstream>

namespace dsinfer::server {

void Histogram::observe(double s) {
    std::lock_guard lk(mu_);
    size_t i = 0;
    while (i < kBounds.size() && s > kBounds[i]) ++i;
    ++counts_[i];
    sum_ += s;
    ++n_;
}

std::string Histogram::render(const std::string& name, const std::string& help) const {
    std::lock_guard lk(mu_);
    std::ostringstream o;
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
    uint64_t cum = 0;
    for (size_t i = 0; i < kBounds.size(); ++i) {
        cum += counts_[i];
        o << name << "_bucket{le=\"" << kBounds[i] << "\"} " << cum << "\n";
    }
    cum += counts_[kBounds.size()];
    o << name << "_bucket{le=\"+Inf\"} " << cum << "\n" << name << "_sum " << sum_ << "\n" << name << "_count " << n_ << "\n";
    return o.str();
}

void Metrics::count_request(const std::string& route, int status) {
    std::lock_guard lk(mu);
    ++requests[route + " " + std::to_string(status)];
}

std::string Metrics::render(const EngineStats& s) const {
    std::ostringstream o;
    auto gauge = [&](const char* name, const char* help, double v) {
        o << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n" << name << " " << v << "\n";
    };
    auto counter = [&](const char* name, const char* help, double v) {
        o << "# HELP " << name << " " << help << "\n# TYPE " << name << " counter\n" << name << " " << v << "\n";
    };
    o << "# HELP dsinfer_http_requests_total HTTP requests by route and status\n"
         "# TYPE dsinfer_http_requests_total counter\n";
    {
        std::lock_guard lk(const_cast<std::mutex&>(mu));
        for (auto& [k, v] : requests) {
            auto sp = k.rfind(' ');
            o << "dsinfer_http_requests_total{route=\"" << k.substr(0, sp) << "\",status=\"" << k.substr(sp + 1)
              << "\"} " << v << "\n";
        }
    }
    gauge("dsinfer_http_requests_in_flight", "HTTP requests being answered", (double)in_flight.load());
    gauge("dsinfer_requests_running", "Sequences in the running batch", (double)s.running);
    gauge("dsinfer_requests_waiting", "Sequences queued for admission", (double)s.waiting);
    gauge("dsinfer_kv_blocks_total", "Blocks in the KV pool", (double)s.kv_blocks_total);
    gauge("dsinfer_kv_tokens_capacity", "Tokens of context the KV pool holds (one sequence)",
          (double)s.kv_tokens_capacity);
    gauge("dsinfer_kv_blocks_used", "KV blocks held by running sequences and prefix snapshots",
          (double)s.kv_blocks_used);
    gauge("dsinfer_kv_blocks_used_by_sequences", "KV blocks held by running sequences",
          (double)(s.kv_blocks_used - s.kv_blocks_snapshots));
    gauge("dsinfer_kv_blocks_prefix_snapshots", "KV blocks held by prefix snapshots", (double)s.kv_blocks_snapshots);
    gauge("dsinfer_kv_usage_ratio", "Fraction of the KV pool in use",
          s.kv_blocks_total ? (double)s.kv_blocks_used / (double)s.kv_blocks_total : 0.0);
    gauge("dsinfer_prefix_snapshots", "Prefix snapshots kept", (double)s.prefix_snapshots);
    counter("dsinfer_requests_finished_total", "Sequences finished normally", (double)s.requests_finished);
    counter("dsinfer_requests_cancelled_total", "Sequences cancelled (client gone, stop string)",
            (double)s.requests_cancelled);
    counter("dsinfer_requests_failed_total", "Sequences failed by the engine", (double)s.requests_failed);
    counter("dsinfer_prompt_tokens_total", "Prompt tokens admitted", (double)s.prompt_tokens);
    counter("dsinfer_generation_tokens_total", "Tokens generated", (double)s.generated_tokens);
    counter("dsinfer_prefix_cache_hit_tokens_total", "Prompt tokens reused from prefix snapshots",
            (double)s.prefix_hit_tokens);
    counter("dsinfer_preemptions_total", "Sequences preempted under KV pressure", (double)s.preemptions);
    counter("dsinfer_engine_steps_total", "Batched model steps", (double)s.steps);
    counter("dsinfer_spec_draft_tokens_total", "Draft tokens proposed (speculative decoding)", (double)s.draft_tokens);
    counter("dsinfer_spec_draft_accepted_tokens_total", "Draft tokens accepted by the model (speculative decoding)",
            (double)s.draft_accepted);
    counter("dsinfer_sampled_rows_total",
            "Sampled tokens: drawn from a logits row, from its summary or on the GPU (not a device argmax)",
            (double)s.sampled_rows);
    counter("dsinfer_sampled_from_summary_total",
            "Of those, the row stayed on the GPU (drawn from its summary, or drawn there)", (double)s.summary_rows);
    counter("dsinfer_client_disconnects_total", "Streams whose client went away", (double)client_disconnects.load());
    o << ttft.render("dsinfer_time_to_first_token_seconds", "Time from request to first token");
    o << itl.render("dsinfer_inter_token_latency_seconds", "Time between streamed tokens");
    o << e2e.render("dsinfer_request_duration_seconds", "Time from request to last token");
    return o.str();
}

}  // namespace dsinfer::server
