// The JSON form of an event: one flat object, read in one pass with no allocation once the
// thread's scratch strings have grown (only escaped strings are copied).
//
// A bad record's error is its first fault in this order, the order the Python decoder
// (recserve.ingest.records) finds them in, so the two agree word for word:
//   1. the bytes are not UTF-8;  2. the text is not JSON ("invalid JSON: ...", checked over the
//   whole text, nested values included);  3. the fields in document order: unknown, repeated,
//   wrong kind or range;  4. a required field missing;  5. a watch without watch_ms.
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "recserve/ingest/blake2b.hpp"
#include "recserve/ingest/event_record.hpp"
#include "recserve/profiles/event.hpp"

namespace recserve::ingest {
namespace {

constexpr std::size_t kMaxIdChars = 256;

enum Field : unsigned {
    kEventId, kUserId, kItemId, kType, kWatchMs, kDurationMs, kTs, kSessionId, kRequestId, kFields
};
constexpr std::string_view kFieldNames[kFields] = {"event_id", "user_id",     "item_id",    "type",      "watch_ms",
                                                   "duration_ms", "ts", "session_id", "request_id"};

enum class Kind { kString, kInteger, kFraction, kBoolean, kNull, kArray, kObject };

const char* kind_name(Kind k) {
    switch (k) {
        case Kind::kString: return "a string";
        case Kind::kInteger: return "an integer";
        case Kind::kFraction: return "a number with a fraction or exponent";
        case Kind::kBoolean: return "a boolean";
        case Kind::kNull: return "null";
        case Kind::kArray: return "an array";
        case Kind::kObject: return "an object";
    }
    return "?";
}

struct Value {
    Kind kind = Kind::kNull;
    std::string_view text;        // a string's UTF-8 (WTF-8 where lone_surrogate)
    bool lone_surrogate = false;  // a \uD800-\uDFFF escape not in a pair
    bool negative = false;        // an integer: sign, magnitude, and whether it passed 2^64-1
    bool overflow = false;
    std::uint64_t magnitude = 0;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

std::size_t code_points(std::string_view s) {
    std::size_t n = 0;
    for (const char c : s) n += !is_continuation(static_cast<unsigned char>(c));
    return n;
}

// Well-formed UTF-8 as Python's strict decoder takes it (Unicode table 3-7): no overlong
// forms, no surrogates, nothing above U+10FFFF.
bool is_utf8(const unsigned char* p, std::size_t size) {
    const unsigned char* end = p + size;
    while (p < end) {
        if (end - p >= 8) {
            std::uint64_t word;
            std::memcpy(&word, p, 8);
            if ((word & 0x8080808080808080ull) == 0) {
                p += 8;
                continue;
            }
        }
        const unsigned char c = *p;
        if (c < 0x80) {
            ++p;
            continue;
        }
        std::size_t n;
        unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
        if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return false;
        }
        if (static_cast<std::size_t>(end - p) < n || p[1] < lo || p[1] > hi) return false;
        for (std::size_t i = 2; i < n; ++i)
            if (!is_continuation(p[i])) return false;
        p += n;
    }
    return true;
}

void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {  // a lone surrogate lands here too, as WTF-8 (one code point)
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

// Up to 64 code points of a name for an error message: printable ASCII kept, the rest '?'.
std::string shown(std::string_view s) {
    std::string out;
    std::size_t n = 0;
    for (std::size_t i = 0; i < s.size() && n < 64; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (is_continuation(c)) continue;
        out.push_back(c >= 0x20 && c <= 0x7E ? static_cast<char>(c) : '?');
        ++n;
    }
    return out;
}

class Parser {
  public:
    Parser(const char* data, std::size_t size, std::string& key_buf, std::string& value_buf)
        : begin_(data), p_(data), end_(data + size), key_buf_(key_buf), value_buf_(value_buf) {}

    RecordStatus run(EventRecord& out, std::string& error) {
        if (!is_utf8(reinterpret_cast<const unsigned char*>(begin_), static_cast<std::size_t>(end_ - begin_))) {
            error = "not UTF-8";
            return RecordStatus::kBad;
        }
        if (!parse_object()) {
            error = "invalid JSON: " + syntax_;
            return RecordStatus::kBad;
        }
        if (!field_error_.empty()) {
            error = std::move(field_error_);
            return RecordStatus::kBad;
        }
        for (unsigned f : {kEventId, kUserId, kItemId, kType}) {
            if (!(seen_ & (1u << f))) {
                error = "missing field \"" + std::string(kFieldNames[f]) + "\"";
                return RecordStatus::kBad;
            }
        }
        if (record_.type == static_cast<std::uint8_t>(profiles::EventType::kWatch) && !watch_present_) {
            error = "watch_ms: required for a watch";
            return RecordStatus::kBad;
        }
        out = record_;
        return RecordStatus::kOk;
    }

  private:
    // ---- syntax ------------------------------------------------------------------------------
    bool fail(const char* what) {
        char text[96];
        std::snprintf(text, sizeof text, "%s at byte %zu", what, static_cast<std::size_t>(p_ - begin_));
        syntax_ = text;
        return false;
    }
    void skip_space() {
        while (p_ < end_ && is_space(*p_)) ++p_;
    }
    bool at(char c) const { return p_ < end_ && *p_ == c; }

    bool parse_object() {
        skip_space();
        if (!at('{')) return fail("expected '{'");
        ++p_;
        skip_space();
        if (at('}')) {
            ++p_;
        } else {
            for (;;) {
                if (!at('"')) return fail("expected a field name");
                Value key;
                if (!parse_string(key_buf_, key)) return false;
                skip_space();
                if (!at(':')) return fail("expected ':'");
                ++p_;
                skip_space();
                Value value;
                if (!parse_value(value)) return false;
                if (field_error_.empty()) take_field(key, value);
                skip_space();
                if (at(',')) {
                    ++p_;
                    skip_space();
                    continue;
                }
                if (at('}')) {
                    ++p_;
                    break;
                }
                return fail("expected ',' or '}'");
            }
        }
        skip_space();
        if (p_ != end_) return fail("trailing data after the object");
        return true;
    }

    bool parse_value(Value& v) {
        if (p_ == end_) return fail("unexpected end");
        switch (*p_) {
            case '"': return parse_string(value_buf_, v);
            case 't': v.kind = Kind::kBoolean; return literal("true");
            case 'f': v.kind = Kind::kBoolean; return literal("false");
            case 'n': v.kind = Kind::kNull; return literal("null");
            case '[': v.kind = Kind::kArray; return skip_nested();
            case '{': v.kind = Kind::kObject; return skip_nested();
            default: return parse_number(v);
        }
    }

    bool literal(std::string_view word) {
        if (static_cast<std::size_t>(end_ - p_) < word.size() || std::string_view(p_, word.size()) != word)
            return fail("unexpected character");
        p_ += word.size();
        return true;
    }

    // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, as RFC 8259 and Python's json have it.
    bool parse_number(Value& v) {
        auto digit = [this] { return p_ < end_ && *p_ >= '0' && *p_ <= '9'; };
        v.kind = Kind::kInteger;
        if (at('-')) {
            v.negative = true;
            ++p_;
        }
        if (!digit()) return fail("unexpected character");
        if (*p_ == '0') {
            ++p_;
        } else {
            while (digit()) {
                const auto d = static_cast<std::uint64_t>(*p_++ - '0');
                if (v.magnitude > (~std::uint64_t{0} - d) / 10) v.overflow = true;
                v.magnitude = v.magnitude * 10 + d;
            }
        }
        if (at('.')) {
            ++p_;
            if (!digit()) return fail("expected a digit after '.'");
            while (digit()) ++p_;
            v.kind = Kind::kFraction;
        }
        if (at('e') || at('E')) {
            ++p_;
            if (at('+') || at('-')) ++p_;
            if (!digit()) return fail("expected a digit in the exponent");
            while (digit()) ++p_;
            v.kind = Kind::kFraction;
        }
        return true;
    }

    static int hex(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }
    bool read_u16(std::uint32_t& cp) {  // the XXXX of \uXXXX, p_ just past the 'u'
        if (end_ - p_ < 4) return fail("invalid \\uXXXX escape");
        cp = 0;
        for (int i = 0; i < 4; ++i) {
            const int h = hex(p_[i]);
            if (h < 0) return fail("invalid \\uXXXX escape");
            cp = cp << 4 | static_cast<std::uint32_t>(h);
        }
        p_ += 4;
        return true;
    }

    // At the opening quote. Text without escapes is viewed in place; escaped text is decoded
    // into `buf`. The input is valid UTF-8 already, so only bytes below 0x20 need refusing.
    bool parse_string(std::string& buf, Value& v) {
        v.kind = Kind::kString;
        const char* start = ++p_;
        while (p_ < end_ && *p_ != '"' && *p_ != '\\' && static_cast<unsigned char>(*p_) >= 0x20) ++p_;
        if (at('"')) {
            v.text = std::string_view(start, static_cast<std::size_t>(p_ - start));
            ++p_;
            return true;
        }
        buf.assign(start, p_);
        for (;;) {
            if (p_ == end_) return fail("unterminated string");
            const char c = *p_;
            if (c == '"') break;
            if (static_cast<unsigned char>(c) < 0x20) return fail("control character in a string");
            if (c != '\\') {
                buf.push_back(c);
                ++p_;
                continue;
            }
            if (++p_ == end_) return fail("unterminated string");
            const char e = *p_++;
            switch (e) {
                case '"': buf.push_back('"'); break;
                case '\\': buf.push_back('\\'); break;
                case '/': buf.push_back('/'); break;
                case 'b': buf.push_back('\b'); break;
                case 'f': buf.push_back('\f'); break;
                case 'n': buf.push_back('\n'); break;
                case 'r': buf.push_back('\r'); break;
                case 't': buf.push_back('\t'); break;
                case 'u': {
                    std::uint32_t cp;
                    if (!read_u16(cp)) return false;
                    // A high surrogate pairs only with a \u low surrogate right after it, as
                    // Python's json reads it; any other surrogate stays lone.
                    if (cp >= 0xD800 && cp <= 0xDBFF && end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') {
                        const char* back = p_;
                        p_ += 2;
                        std::uint32_t low;
                        if (!read_u16(low)) return false;
                        if (low >= 0xDC00 && low <= 0xDFFF) {
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                        } else {
                            p_ = back;
                        }
                    }
                    if (cp >= 0xD800 && cp <= 0xDFFF) v.lone_surrogate = true;
                    append_utf8(buf, cp);
                    break;
                }
                default: --p_; return fail("invalid escape");
            }
        }
        ++p_;
        v.text = buf;
        return true;
    }

    // Arrays and objects are never valid field values, but the whole text must be JSON before
    // a field's fault counts: read past them without recursion (the stack holds the closers).
    bool skip_nested() {
        nested_.clear();
        nested_.push_back(*p_ == '[' ? ']' : '}');
        ++p_;
        skip_space();
        if (at(nested_.back())) {
            ++p_;
            nested_.pop_back();
        }
        while (!nested_.empty()) {
            if (nested_.back() == '}') {  // a member: "name": value
                if (!at('"')) return fail("expected a field name");
                Value key;
                if (!parse_string(value_buf_, key)) return false;
                skip_space();
                if (!at(':')) return fail("expected ':'");
                ++p_;
                skip_space();
            }
            if (at('[') || at('{')) {
                nested_.push_back(*p_ == '[' ? ']' : '}');
                ++p_;
                skip_space();
                if (!at(nested_.back())) continue;  // read its first element
                ++p_;
                nested_.pop_back();
            } else {
                Value inner;
                if (!parse_value(inner)) return false;
            }
            // After a value: a comma, or closers for as many containers as end here.
            for (;;) {
                skip_space();
                if (nested_.empty()) return true;
                if (at(',')) {
                    ++p_;
                    skip_space();
                    break;
                }
                if (!at(nested_.back())) return fail("expected ',' or a closing bracket");
                ++p_;
                nested_.pop_back();
            }
        }
        return true;
    }

    // ---- fields ------------------------------------------------------------------------------
    void field_fault(Field f, const std::string& what) { field_error_ = std::string(kFieldNames[f]) + ": " + what; }

    void take_field(const Value& key, const Value& v) {
        unsigned f = 0;
        while (f < kFields && kFieldNames[f] != key.text) ++f;
        if (key.lone_surrogate || f == kFields) {
            field_error_ = "unknown field \"" + shown(key.text) + "\"";
            return;
        }
        if (seen_ & (1u << f)) {
            field_error_ = "duplicate field \"" + std::string(kFieldNames[f]) + "\"";
            return;
        }
        seen_ |= 1u << f;
        const auto field = static_cast<Field>(f);
        switch (field) {
            case kEventId:
            case kUserId:
            case kItemId: {
                if (!string_ok(field, v, false, 1)) return;
                const std::uint64_t k = id_key(v.text.data(), v.text.size());
                (field == kEventId ? record_.event_key : field == kUserId ? record_.user_key : record_.item_key) = k;
                return;
            }
            case kSessionId:
            case kRequestId: string_ok(field, v, true, 0); return;
            case kType: {
                if (v.kind != Kind::kString)
                    return field_fault(field, std::string("expected a string, got ") + kind_name(v.kind));
                for (std::size_t t = 0; t < profiles::kEventTypes; ++t) {
                    if (!v.lone_surrogate && v.text == profiles::kEventTypeNames[t]) {
                        record_.type = static_cast<std::uint8_t>(t);
                        return;
                    }
                }
                return field_fault(field, "unknown event type \"" + shown(v.text) + "\"");
            }
            case kWatchMs: {
                std::uint64_t x;
                if (!integer_ok(field, v, 0, std::uint64_t{1} << 32, "[0, 2^32)", x)) return;
                record_.watch_ms = static_cast<std::uint32_t>(x);
                watch_present_ = v.kind != Kind::kNull;
                return;
            }
            case kDurationMs: {
                std::uint64_t x;
                if (!integer_ok(field, v, 1, std::uint64_t{1} << 32, "[1, 2^32)", x)) return;
                record_.duration_ms = static_cast<std::uint32_t>(x);
                return;
            }
            case kTs: {
                std::uint64_t x;
                if (!integer_ok(field, v, 0, std::uint64_t{1} << 63, "[0, 2^63)", x)) return;
                record_.ts_ms = v.kind == Kind::kNull ? -1 : static_cast<std::int64_t>(x);
                return;
            }
            case kFields: return;
        }
    }

    bool string_ok(Field f, const Value& v, bool nullable, std::size_t min_chars) {
        if (nullable && v.kind == Kind::kNull) return true;
        if (v.kind != Kind::kString) {
            field_fault(f, std::string("expected a string, got ") + kind_name(v.kind));
            return false;
        }
        if (v.lone_surrogate) {
            field_fault(f, "lone surrogate in string");
            return false;
        }
        const std::size_t n = code_points(v.text);
        if (n < min_chars || n > kMaxIdChars) {
            const char* expected = min_chars ? " characters, expected 1 to 256" : " characters, expected at most 256";
            field_fault(f, std::to_string(n) + expected);
            return false;
        }
        return true;
    }

    // Null is absence (x = 0). Otherwise an integer in [lo, hi).
    bool integer_ok(Field f, const Value& v, std::uint64_t lo, std::uint64_t hi, const char* range, std::uint64_t& x) {
        x = 0;
        if (v.kind == Kind::kNull) return true;
        if (v.kind != Kind::kInteger) {
            field_fault(f, std::string("expected an integer, got ") + kind_name(v.kind));
            return false;
        }
        const bool zero = v.magnitude == 0 && !v.overflow;
        if ((v.negative && !zero) || v.overflow || v.magnitude < lo || v.magnitude >= hi) {
            field_fault(f, std::string("out of range ") + range);
            return false;
        }
        x = v.magnitude;
        return true;
    }

    const char* begin_;
    const char* p_;
    const char* end_;
    std::string& key_buf_;
    std::string& value_buf_;
    std::vector<char> nested_;
    std::string syntax_;
    std::string field_error_;
    unsigned seen_ = 0;
    bool watch_present_ = false;
    EventRecord record_;
};

}  // namespace

RecordStatus decode_event_json(const char* data, std::size_t size, EventRecord& out, std::string& error) {
    // Per-thread scratch for escaped strings: grown once, then reused by every record.
    thread_local std::string key_buf;
    thread_local std::string value_buf;
    return Parser(data, size, key_buf, value_buf).run(out, error);
}

}  // namespace recserve::ingest
