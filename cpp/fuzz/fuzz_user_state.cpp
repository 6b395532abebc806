// Fuzzes the user byte images that stores keep outside the process (profiles/user_state.cpp,
// Profiles::import_users). The input is chunks (fuzz_common.hpp), three per user: the user's
// key (8 bytes, little-endian; shorter is zero-padded), its vectors image, its state image; at
// most 4 users. An import that succeeds must round-trip: a user named once exports the very
// images it was given (a version 1 state image as its version 2 form), then takes events and
// reads.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "recserve/profiles/profiles.hpp"

namespace {

using recserve::profiles::Profiles;

constexpr std::size_t kMaxUsers = 4;

void exercise(Profiles& p, std::uint64_t user) {
    std::uint64_t words[recserve::profiles::kUserWords];
    bool found = false;
    p.user_words(&user, 1, words, &found);
    FUZZ_CHECK(found);
    recserve::fuzz::apply_more_events(p, user, 20, 0xCAFE0, 5000, 2000, [](std::size_t i) { return 200 + i; });
}

// What export_user writes for an imported state image: the same bytes, except that a
// version 1 image (no recent positives) comes back as version 2 with an empty list.
std::vector<char> upgraded(const std::vector<char>& state) {
    std::uint32_t version = 0;
    std::memcpy(&version, state.data(), sizeof version);  // an image that imported has one
    if (version != 1) return state;
    std::vector<char> out = state;
    const std::uint32_t two = 2, none = 0;
    std::memcpy(out.data(), &two, sizeof two);
    out.insert(out.end(), reinterpret_cast<const char*>(&none), reinterpret_cast<const char*>(&none) + sizeof none);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    recserve::fuzz::Chunks chunks(data, size);
    std::vector<std::uint64_t> users;
    std::vector<std::vector<char>> vectors, states;
    std::string_view key, vec, state;
    while (users.size() < kMaxUsers && chunks.next(key) && chunks.next(vec) && chunks.next(state)) {
        std::uint64_t k = 0;
        std::memcpy(&k, key.data(), std::min(key.size(), sizeof k));
        users.push_back(k);
        vectors.emplace_back(vec.begin(), vec.end());
        states.emplace_back(state.begin(), state.end());
    }
    auto created = Profiles::create(recserve::fuzz::small_profiles());
    FUZZ_CHECK(created.is_ok());
    Profiles& p = *created.value();
    std::size_t imported = 0;
    if (!p.import_users(users.data(), vectors.data(), states.data(), users.size(), &imported).is_ok()) {
        FUZZ_CHECK(p.stats().users == 0);  // a refused batch changes nothing
        return 0;
    }
    for (std::size_t i = 0; i < users.size(); ++i) {
        std::size_t named = 0;
        for (std::uint64_t u : users) named += u == users[i];
        if (named != 1) continue;
        std::vector<char> v, s;
        FUZZ_CHECK(p.export_user(users[i], &v, &s));
        FUZZ_CHECK(v == vectors[i]);
        FUZZ_CHECK(s == upgraded(states[i]));
    }
    for (std::uint64_t u : users) exercise(p, u);
    return 0;
}
