// Status and Result<T>: errors as values.
#include "recserve/base/status.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>

namespace recserve {
namespace {

TEST(Status, DefaultIsOkWithNoMessage) {
    const Status st;
    EXPECT_TRUE(st.is_ok());
    EXPECT_EQ(st.code(), StatusCode::kOk);
    EXPECT_TRUE(st.message().empty());
    EXPECT_TRUE(Status::ok().is_ok());
}

TEST(Status, EachFactoryCarriesItsCodeAndMessage) {
    const std::pair<Status, StatusCode> cases[] = {
        {Status::invalid_argument("bad dims"), StatusCode::kInvalidArgument},
        {Status::not_found("bad dims"), StatusCode::kNotFound},
        {Status::corrupt("bad dims"), StatusCode::kCorrupt},
        {Status::io_error("bad dims"), StatusCode::kIoError},
        {Status::unavailable("bad dims"), StatusCode::kUnavailable},
    };
    for (const auto& [st, code] : cases) {
        EXPECT_FALSE(st.is_ok());
        EXPECT_EQ(st.code(), code);
        EXPECT_EQ(st.message(), "bad dims");
    }
}

TEST(Result, HoldsAValue) {
    Result<int> r = 42;
    ASSERT_TRUE(r.is_ok());
    EXPECT_EQ(r.value(), 42);
    r.value() = 7;
    EXPECT_EQ(std::as_const(r).value(), 7);
}

TEST(Result, HoldsTheStatusThatExplainsWhyThereIsNoValue) {
    const Result<std::string> r = Status::not_found("no such file: x.idx");
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
    EXPECT_EQ(r.status().message(), "no such file: x.idx");
}

TEST(Result, MovesOutMoveOnlyValues) {
    Result<std::unique_ptr<int>> r = std::make_unique<int>(5);
    ASSERT_TRUE(r.is_ok());
    std::unique_ptr<int> p = std::move(r).value();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 5);
}

Status fails_at(int step, int* reached) {
    *reached = step;
    return step == 2 ? Status::corrupt("checksum mismatch at step 2") : Status::ok();
}

Status run_three_steps(int* reached) {
    for (int step = 1; step <= 3; ++step) RECSERVE_RETURN_IF_ERROR(fails_at(step, reached));
    return Status::ok();
}

TEST(Status, ReturnIfErrorStopsAtTheFirstError) {
    int reached = 0;
    const Status st = run_three_steps(&reached);
    EXPECT_EQ(reached, 2);
    EXPECT_EQ(st.code(), StatusCode::kCorrupt);
    EXPECT_EQ(st.message(), "checksum mismatch at step 2");
}

}  // namespace
}  // namespace recserve
