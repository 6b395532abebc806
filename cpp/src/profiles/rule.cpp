#include "recserve/profiles/rule.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace recserve::profiles {

Status validate(const UpdateRule& r) {
    for (std::size_t t = 0; t < kEventTypes; ++t) {
        if (!std::isfinite(r.weights[t]))
            return Status::invalid_argument(std::string("weight of ") + kEventTypeNames[t] + " must be finite");
    }
    if (!(r.completion_cap > 0.0f) || !std::isfinite(r.completion_cap))
        return Status::invalid_argument("completion_cap must be > 0");
    if (r.curve_knots < 2 || r.curve_knots > kMaxCurveKnots)
        return Status::invalid_argument("the completion curve needs 2 to 16 knots");
    for (std::size_t k = 0; k < r.curve_knots; ++k) {
        if (!std::isfinite(r.curve_x[k]) || !std::isfinite(r.curve_y[k]))
            return Status::invalid_argument("completion curve knot " + std::to_string(k) + " is not finite");
        if (k > 0 && !(r.curve_x[k] > r.curve_x[k - 1]))
            return Status::invalid_argument("completion curve x must increase (knot " + std::to_string(k) + ")");
    }
    if (r.curve_x[0] > 0.0f || r.curve_x[r.curve_knots - 1] < r.completion_cap)
        return Status::invalid_argument("the completion curve must span 0 to completion_cap");
    if (!(r.completion_threshold > 0.0f) || !(r.completion_threshold <= r.completion_cap))
        return Status::invalid_argument("completion_threshold must be in (0, completion_cap]");
    if (!std::isfinite(r.fast_skip_seconds) || r.fast_skip_seconds < 0)
        return Status::invalid_argument("fast_skip_seconds must be >= 0");
    if (!std::isfinite(r.fast_skip_weight)) return Status::invalid_argument("fast_skip_weight must be finite");
    if (!std::isfinite(r.lr_long) || r.lr_long < 0 || !std::isfinite(r.lr_session) || r.lr_session < 0)
        return Status::invalid_argument("learning rates must be >= 0");
    if (!(r.session_half_life_seconds > 0) || !std::isfinite(r.session_half_life_seconds))
        return Status::invalid_argument("session_half_life_seconds must be > 0");
    if (!(r.session_timeout_seconds > 0) || !std::isfinite(r.session_timeout_seconds))
        return Status::invalid_argument("session_timeout_seconds must be > 0");
    return Status::ok();
}

bool is_fast_skip(const UpdateRule& r, EventType type, std::uint32_t watch_ms, std::uint32_t duration_ms) {
    if (type != EventType::kWatch && type != EventType::kSkip) return false;
    if (static_cast<float>(watch_ms) >= r.fast_skip_seconds * 1000.0f) return false;
    // A short video watched to the end is not a skip, however few seconds it took.
    return duration_ms == 0 ||
           static_cast<float>(watch_ms) / static_cast<float>(duration_ms) < r.completion_threshold;
}

float engagement_weight(const UpdateRule& r, EventType type, std::uint32_t watch_ms, std::uint32_t duration_ms) {
    if (is_fast_skip(r, type, watch_ms, duration_ms)) return r.fast_skip_weight;
    const auto t = static_cast<std::size_t>(type);
    if (type != EventType::kWatch) return r.weights[t];
    const float ratio = std::min(static_cast<float>(watch_ms) / static_cast<float>(duration_ms), r.completion_cap);
    std::size_t k = 1;
    while (k + 1 < r.curve_knots && r.curve_x[k] < ratio) ++k;
    const float x0 = r.curve_x[k - 1], x1 = r.curve_x[k];
    const float f = std::clamp((ratio - x0) / (x1 - x0), 0.0f, 1.0f);
    return r.weights[t] * (r.curve_y[k - 1] + f * (r.curve_y[k] - r.curve_y[k - 1]));
}

void move_toward(float* v, const float* x, std::size_t dims, float lr, float weight) {
    const float a = std::min(1.0f, lr * std::fabs(weight));
    if (a == 0.0f) return;
    const float b = weight < 0 ? -a : a;
    for (std::size_t d = 0; d < dims; ++d) v[d] = (1.0f - a) * v[d] + b * x[d];
}

float session_decay(const UpdateRule& r, std::int64_t dt_ms) {
    if (dt_ms <= 0) return 1.0f;
    const double dt = static_cast<double>(dt_ms) / 1000.0;
    if (dt > r.session_timeout_seconds) return 0.0f;
    return static_cast<float>(std::exp2(-dt / r.session_half_life_seconds));
}

}  // namespace recserve::profiles
