// The declared update rule: how much an event says about a user's taste (its engagement
// weight), and how far that moves the user's vectors. The same rule runs online and in replay.
//
//   watch:  weight[watch] * curve(min(watch_ms / duration_ms, completion_cap))
//   skip, or a watch shorter than fast_skip_seconds that did not complete: fast_skip_weight
//   any other type: weight[type]
//
//   long-term: v <- (1 - a) v + sign(w) a x,  a = min(1, lr_long * |w|)      (slow)
//   session:   the same with lr_session (fast), after decaying the session vector by
//              2^(-dt / session_half_life) since the user's previous event, or zeroing it
//              when dt exceeds session_timeout (a new session)
//
// A negative weight moves the vector toward -x, away from the item. Both moves are convex
// combinations, so no vector grows past the largest item vector it has met.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "recserve/base/status.hpp"
#include "recserve/profiles/event.hpp"

namespace recserve::profiles {

inline constexpr std::size_t kMaxCurveKnots = 16;

struct UpdateRule {
    // Per event type, in EventType order. watch's scales the completion curve.
    std::array<float, kEventTypes> weights{0.0f, 1.0f, 0.8f, 0.5f, 0.6f, 0.5f, 0.6f, -0.1f, -1.0f};
    // Piecewise linear over the completion ratio: knots (x increasing, x in [0, cap]).
    std::size_t curve_knots = 3;
    std::array<float, kMaxCurveKnots> curve_x{0.0f, 0.3f, 1.0f};
    std::array<float, kMaxCurveKnots> curve_y{-0.2f, 0.0f, 1.0f};
    float completion_cap = 1.0f;        // watch_ms / duration_ms is capped here (replays)
    float completion_threshold = 0.9f;  // a watch at or above this ratio is a completion
    float fast_skip_seconds = 3.0f;
    float fast_skip_weight = -0.5f;
    float lr_long = 0.02f;
    float lr_session = 0.25f;
    double session_half_life_seconds = 600.0;
    double session_timeout_seconds = 1800.0;
};

Status validate(const UpdateRule& rule);

// Whether a watch or skip of watch_ms counts as a fast skip.
bool is_fast_skip(const UpdateRule& rule, EventType type, std::uint32_t watch_ms, std::uint32_t duration_ms);

// The engagement weight of one event (see the top of this file).
float engagement_weight(const UpdateRule& rule, EventType type, std::uint32_t watch_ms, std::uint32_t duration_ms);

// v <- (1 - a) v + sign(w) a x with a = min(1, lr |w|).
void move_toward(float* v, const float* x, std::size_t dims, float lr, float weight);

// The factor that decays a session vector after dt_ms without events (0 past the timeout).
float session_decay(const UpdateRule& rule, std::int64_t dt_ms);

}  // namespace recserve::profiles
