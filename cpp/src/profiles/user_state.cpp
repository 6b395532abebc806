// One user's state as two byte images, for stores that keep users outside the process:
//
//   vectors: 2 x dims float32 (long-term | session), the row's floats as they are
//   state:   u32 version | u32 dims | kUserWords u64 words | seen-set | u32 keys | u32 head | keys
//            | recent positives (version 2: u32 count | count x (u64 item, i64 ts_ms, f32 weight))
//
// Version 1 images (no recent positives) still import, with an empty list.
//
// The writer's log pointer word is not part of the image (an address means nothing elsewhere).
#include <cmath>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "recserve/base/byte_io.hpp"
#include "recserve/profiles/profiles.hpp"
#include "user_logs.hpp"

namespace recserve::profiles {
namespace {

constexpr std::uint32_t kStateVersion = 2;  // 2: recent positives

struct ParsedUser {
    std::uint64_t words[kUserWords];
    UserLog log;
};

struct RowImage {
    const float* vector;
    const std::uint64_t* words;
    std::size_t floats;
};

bool write_row(void* context, const embed::RowView& row) {
    const auto& in = *static_cast<const RowImage*>(context);
    std::memcpy(row.vector, in.vector, in.floats * sizeof(float));
    std::memcpy(row.words, in.words, kUserWords * sizeof(std::uint64_t));
    row.words[kUserLogWord] = 0;  // the writer finds the log the slow way next time
    return true;
}

// The state image of a row's words and a log.
std::vector<char> state_image(const ProfilesOptions& options, const std::uint64_t* words, const UserLog& log) {
    ByteWriter w;
    w.reserve(sizeof(std::uint32_t) * 4 + kUserWords * sizeof(std::uint64_t) +
              options.event_key_window * sizeof(std::uint64_t) + options.seen.recent * sizeof(std::uint64_t) +
              options.seen.filter_bits / 4 + options.co_engagement.history * 20 + 64);
    w.put(kStateVersion);
    w.put(static_cast<std::uint32_t>(options.dims));
    w.bytes(words, kUserWords * sizeof(std::uint64_t));
    log.seen.serialize(w);
    w.put(static_cast<std::uint32_t>(log.keys.size()));
    w.put(log.keys_head);
    w.bytes(log.keys.data(), log.keys.size() * sizeof(std::uint64_t));
    put_positives(w, log.positives);
    return std::move(w.buffer());
}

// What evict_users() does with each row before the table drops it.
struct Evicting {
    const ProfilesOptions* options;
    Profiles::UserLogs* logs;
    std::vector<UserImage>* out;
};

void evict_row(void* context, std::uint64_t user, const float* vector, const std::uint64_t* words) {
    auto& e = *static_cast<Evicting*>(context);
    Profiles::UserLogs::Shard& shard = e.logs->of(user);
    std::unique_lock<std::shared_mutex> log_lock(shard.lock);
    const auto it = shard.logs.find(user);
    if (e.out != nullptr) {
        const std::size_t bytes = 2 * e.options->dims * sizeof(float);
        UserImage& image = e.out->emplace_back();
        image.user = user;
        image.vectors.assign(reinterpret_cast<const char*>(vector), reinterpret_cast<const char*>(vector) + bytes);
        image.state = state_image(*e.options, words, it == shard.logs.end() ? UserLog{} : it->second);
    }
    if (it != shard.logs.end()) shard.logs.erase(it);
}

}  // namespace

bool Profiles::export_user(std::uint64_t user, std::vector<char>* vectors, std::vector<char>* state) const {
    const std::size_t floats = 2 * options_.dims;
    std::vector<float> row(floats);
    std::uint64_t words[kUserTableWords];
    bool found = false;
    std::lock_guard<std::mutex> lock(writer_);
    users_->read(&user, 1, row.data(), words, &found);
    if (!found) return false;
    vectors->resize(floats * sizeof(float));
    if (floats != 0) std::memcpy(vectors->data(), row.data(), floats * sizeof(float));
    const UserLogs::Shard& shard = logs_->of(user);
    std::shared_lock<std::shared_mutex> log_lock(shard.lock);
    const auto it = shard.logs.find(user);
    *state = state_image(options_, words, it == shard.logs.end() ? UserLog{} : it->second);
    return true;
}

std::size_t Profiles::evict_users(std::size_t keep, std::vector<UserImage>* out) {
    std::lock_guard<std::mutex> lock(writer_);
    Evicting evicting{&options_, logs_.get(), out};
    return users_->evict(keep, evict_row, &evicting);
}

bool Profiles::erase_user(std::uint64_t user) {
    std::lock_guard<std::mutex> lock(writer_);
    const bool had_row = users_->remove(&user, 1) == 1;
    UserLogs::Shard& shard = logs_->of(user);
    std::unique_lock<std::shared_mutex> log_lock(shard.lock);
    return shard.logs.erase(user) == 1 || had_row;
}

Status Profiles::import_users(const std::uint64_t* users, const std::vector<char>* vectors,
                              const std::vector<char>* states, std::size_t n, std::size_t* imported_count) {
    const std::size_t floats = 2 * options_.dims;
    std::vector<ParsedUser> parsed(n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::string where = "the image of user " + std::to_string(i);
        if (users[i] == embed::kInvalidKey) return Status::invalid_argument(where + " has the reserved key");
        if (vectors[i].size() != floats * sizeof(float))
            return Status::invalid_argument(where + " has " + std::to_string(vectors[i].size()) +
                                            " bytes of vectors, expected " + std::to_string(floats * sizeof(float)));
        for (std::size_t j = 0; j < floats; ++j) {
            float v;
            std::memcpy(&v, vectors[i].data() + j * sizeof(float), sizeof(float));
            if (!std::isfinite(v)) return Status::invalid_argument(where + " has a non-finite vector");
        }
        ByteReader r(states[i].data(), states[i].size());
        std::uint32_t version = 0, dims = 0, keys = 0;
        ParsedUser& p = parsed[i];
        if (!r.get(version) || version < 1 || version > kStateVersion || !r.get(dims) || dims != options_.dims)
            return Status::invalid_argument(where + " has an unknown version or other dims");
        if (!r.bytes(p.words, sizeof(p.words)) || !p.log.seen.parse(r, options_.seen) || !r.get(keys) ||
            !r.get(p.log.keys_head))
            return Status::invalid_argument(where + " is truncated");
        if (keys > options_.event_key_window || p.log.keys_head >= std::max<std::uint32_t>(keys, 1))
            return Status::invalid_argument(where + " has an inconsistent event key window");
        p.log.keys.resize(keys);
        if (!r.bytes(p.log.keys.data(), keys * sizeof(std::uint64_t)))
            return Status::invalid_argument(where + " is truncated");
        if (version >= 2) {
            if (const char* problem = get_positives(r, p.log.positives))
                return Status::invalid_argument(where + " " + problem);
        }
        if (!r.at_end()) return Status::invalid_argument(where + " has extra bytes");
    }
    std::lock_guard<std::mutex> lock(writer_);
    std::size_t imported = 0;
    for (std::size_t i = 0; i < n; ++i) {
        // Only forward: an image read before this process applied more events is older than
        // the row, and replacing the row would lose them.
        std::uint64_t current[kUserTableWords];
        bool found = false;
        users_->read(&users[i], 1, nullptr, current, &found);
        if (found && current[kHighWaterSeq] >= parsed[i].words[kHighWaterSeq]) continue;
        UserLogs::Shard& shard = logs_->of(users[i]);
        {
            std::unique_lock<std::shared_mutex> log_lock(shard.lock);
            shard.logs[users[i]] = std::move(parsed[i].log);
        }
        RowImage image{reinterpret_cast<const float*>(vectors[i].data()), parsed[i].words, floats};
        users_->update(users[i], write_row, &image);
        ++imported;
    }
    if (imported_count != nullptr) *imported_count = imported;
    return Status::ok();
}

}  // namespace recserve::profiles
