// Status and Result<T>: errors are values in the core; only the bindings raise.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace recserve {

enum class StatusCode {
    kOk,
    kInvalidArgument,  // the caller's input is wrong: shape, range, NaN
    kNotFound,         // a key or file that does not exist
    kCorrupt,          // a file failed its checksum or structural checks
    kIoError,          // the operating system refused a read or write
    kUnavailable,      // asked for something this machine cannot do (an ISA)
};

class [[nodiscard]] Status {
  public:
    Status() = default;
    static Status ok() { return {}; }
    static Status invalid_argument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
    static Status not_found(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
    static Status corrupt(std::string m) { return {StatusCode::kCorrupt, std::move(m)}; }
    static Status io_error(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
    static Status unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }

    bool is_ok() const { return code_ == StatusCode::kOk; }
    StatusCode code() const { return code_; }
    const std::string& message() const { return message_; }

  private:
    Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
    StatusCode code_ = StatusCode::kOk;
    std::string message_;
};

// A value or the Status that explains why there is none.
template <class T>
class [[nodiscard]] Result {
  public:
    Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
    Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).is_ok()); }  // NOLINT

    bool is_ok() const { return std::holds_alternative<T>(v_); }
    const Status& status() const { return std::get<Status>(v_); }
    T& value() & { return std::get<T>(v_); }
    const T& value() const& { return std::get<T>(v_); }
    T&& value() && { return std::get<T>(std::move(v_)); }

  private:
    std::variant<T, Status> v_;
};

}  // namespace recserve

#define RECSERVE_RETURN_IF_ERROR(expr)           \
    do {                                         \
        ::recserve::Status _st = (expr);         \
        if (!_st.is_ok()) return _st;            \
    } while (0)
