// Python-compatible JSON text (json.dumps with ensure_ascii=False and the default separators): the
// encoder embeds tool schemas, response formats and non-string tool arguments as Python writes them,
// so the prompt matches DeepSeek's reference byte for byte.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "text/dsml.h"

namespace dsinfer::text {

std::string py_json_string(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out.push_back('"');
    for (unsigned char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out.push_back(static_cast<char>(c));
                }
        }
    }
    out.push_back('"');
    return out;
}

// repr(float): the shortest digits that round-trip, written positionally when the decimal exponent is in
// [-4, 16) and in exponent form otherwise, always with a ".0" or a fraction in positional form.
static std::string py_float_repr(double x) {
    if (std::isnan(x)) return "NaN";
    if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
    std::string sci(buf, res.ptr);
    std::string sign;
    if (!sci.empty() && sci[0] == '-') {
        sign = "-";
        sci.erase(0, 1);
    }
    size_t epos = sci.find('e');
    std::string mant = sci.substr(0, epos);
    int exp10 = std::atoi(sci.c_str() + epos + 1);
    std::string digits;
    for (char c : mant)
        if (c != '.') digits.push_back(c);
    int decpt = exp10 + 1;  // position of the decimal point relative to the digits
    int nd = static_cast<int>(digits.size());
    std::string out;
    if (decpt <= -4 || decpt > 16) {
        out = digits.substr(0, 1);
        if (nd > 1) {
            out.push_back('.');
            out.append(digits, 1, std::string::npos);
        }
        char eb[16];
        std::snprintf(eb, sizeof eb, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
        out += eb;
    } else if (decpt <= 0) {
        out = "0.";
        out.append(static_cast<size_t>(-decpt), '0');
        out += digits;
    } else if (decpt >= nd) {
        out = digits + std::string(decpt - nd, '0') + ".0";
    } else {
        out = digits.substr(0, decpt) + "." + digits.substr(decpt);
    }
    return sign + out;
}

static void dump_into(const ojson& v, std::string& out) {
    switch (v.type()) {
        case ojson::value_t::null:
            out += "null";
            break;
        case ojson::value_t::boolean:
            out += v.get<bool>() ? "true" : "false";
            break;
        case ojson::value_t::number_integer:
            out += std::to_string(v.get<int64_t>());
            break;
        case ojson::value_t::number_unsigned:
            out += std::to_string(v.get<uint64_t>());
            break;
        case ojson::value_t::number_float:
            out += py_float_repr(v.get<double>());
            break;
        case ojson::value_t::string:
            out += py_json_string(v.get_ref<const std::string&>());
            break;
        case ojson::value_t::array: {
            out.push_back('[');
            bool first = true;
            for (const auto& e : v) {
                if (!first) out += ", ";
                first = false;
                dump_into(e, out);
            }
            out.push_back(']');
            break;
        }
        case ojson::value_t::object: {
            out.push_back('{');
            bool first = true;
            for (auto it = v.begin(); it != v.end(); ++it) {
                if (!first) out += ", ";
                first = false;
                out += py_json_string(it.key());
                out += ": ";
                dump_into(it.value(), out);
            }
            out.push_back('}');
            break;
        }
        case ojson::value_t::binary:
        case ojson::value_t::discarded:
            throw DsmlError("cannot write a binary or discarded JSON value");
    }
}

std::string py_json_dumps(const ojson& value) {
    std::string out;
    dump_into(value, out);
    return out;
}

}  // namespace dsinfer::text
