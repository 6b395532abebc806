// recserve._core.profiles: user and item state and the event update rules. Inputs are checked
// here (dtypes, shapes, lengths; values are the core's to check), then the GIL is released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "errors.hpp"
#include "handles.hpp"
#include "recserve/base/byte_io.hpp"
#include "recserve/profiles/profiles.hpp"

namespace recserve::py {
namespace {

using profiles::Profiles;
using profiles::ProfilesOptions;
using profiles::UserImage;

template <class T>
const T* column(const pyb::array& a, const char* what, pyb::ssize_t n) {
    return array_data<T>(a, what, {n});
}

ProfilesOptions options_from(std::size_t dims, std::size_t user_capacity, std::size_t item_capacity,
                             std::size_t shards, std::uint32_t seen_recent, std::uint32_t seen_filter_bits,
                             std::uint32_t seen_filter_items, std::uint32_t event_key_window, const pyb::dict& rule,
                             bool user_lru, std::uint32_t co_neighbours, std::uint32_t co_history,
                             float co_positive_weight, double co_half_life_seconds) {
    ProfilesOptions o;
    o.user_lru = user_lru;
    o.co_engagement = {co_neighbours, co_history, co_positive_weight, co_half_life_seconds};
    o.dims = dims;
    o.user_capacity = user_capacity;
    o.item_capacity = item_capacity;
    o.shards = shards;
    o.seen = {seen_recent, seen_filter_bits, seen_filter_items};
    o.event_key_window = event_key_window;
    profiles::UpdateRule& r = o.rule;
    const auto weights = rule["weights"].cast<std::vector<float>>();
    const auto xs = rule["curve_x"].cast<std::vector<float>>();
    const auto ys = rule["curve_y"].cast<std::vector<float>>();
    if (weights.size() != profiles::kEventTypes)
        throw pyb::value_error("rule weights need one value per event type (" + std::to_string(profiles::kEventTypes) + ")");
    if (xs.size() != ys.size() || xs.size() < 2 || xs.size() > profiles::kMaxCurveKnots)
        throw pyb::value_error("the completion curve needs 2 to 16 (x, y) knots");
    std::copy(weights.begin(), weights.end(), r.weights.begin());
    r.curve_knots = xs.size();
    std::copy(xs.begin(), xs.end(), r.curve_x.begin());
    std::copy(ys.begin(), ys.end(), r.curve_y.begin());
    r.completion_cap = rule["completion_cap"].cast<float>();
    r.completion_threshold = rule["completion_threshold"].cast<float>();
    r.fast_skip_seconds = rule["fast_skip_seconds"].cast<float>();
    r.fast_skip_weight = rule["fast_skip_weight"].cast<float>();
    r.lr_long = rule["lr_long"].cast<float>();
    r.lr_session = rule["lr_session"].cast<float>();
    r.session_half_life_seconds = rule["session_half_life_seconds"].cast<double>();
    r.session_timeout_seconds = rule["session_timeout_seconds"].cast<double>();
    return o;
}

// A snapshot image in memory: taken under the writer lock, written to disk after it.
class PySnapshot {
  public:
    explicit PySnapshot(std::vector<char> bytes) : bytes_(std::move(bytes)) {}
    void write(const std::string& path) const {
        Status st;
        {
            pyb::gil_scoped_release release;
            const std::span<const char> parts[] = {{bytes_.data(), bytes_.size()}};
            st = write_file_atomically(path, parts);
        }
        raise_if_error(st);
    }
    std::size_t size() const { return bytes_.size(); }

  private:
    std::vector<char> bytes_;
};

class PyProfiles {
  public:
    explicit PyProfiles(std::unique_ptr<Profiles> p) : p_(std::move(p)) {}
    const Profiles& profiles() const { return *p_; }

    static PyProfiles create(const ProfilesOptions& o) {
        Result<std::unique_ptr<Profiles>> p = Profiles::create(o);
        raise_if_error(p.is_ok() ? Status::ok() : p.status());
        return PyProfiles(std::move(p).value());
    }

    static pyb::tuple load(const std::string& path, const ProfilesOptions& o) {
        std::uint64_t lsn = 0;
        Result<std::unique_ptr<Profiles>> p = Status::not_found("");
        {
            pyb::gil_scoped_release release;
            p = Profiles::load(path, o, &lsn);
        }
        raise_if_error(p.is_ok() ? Status::ok() : p.status());
        return pyb::make_tuple(PyProfiles(std::move(p).value()), lsn);
    }

    void set_items(const pyb::array& ids, const pyb::array& vectors) {
        require_id_rows(ids, vectors, dims());
        const auto* k = static_cast<const std::uint64_t*>(ids.data());
        const auto* v = static_cast<const float*>(vectors.data());
        Status st;
        {
            pyb::gil_scoped_release release;
            st = p_->set_items(k, v, static_cast<std::size_t>(ids.shape(0)));
        }
        raise_if_error(st);
    }

    std::size_t remove_items(const pyb::array& ids) {
        require_uint64_vector(ids, "ids");
        const auto* k = static_cast<const std::uint64_t*>(ids.data());
        pyb::gil_scoped_release release;
        return p_->remove_items(k, static_cast<std::size_t>(ids.shape(0)));
    }

    pyb::dict apply(const pyb::array& users, const pyb::array& items, const pyb::array& types,
                    const pyb::array& watch_ms, const pyb::array& duration_ms, const pyb::array& ts_ms,
                    const pyb::array& seq, const std::optional<pyb::array>& event_keys) {
        const profiles::EventBatch b = batch_of(users, items, types, watch_ms, duration_ms, ts_ms, seq, event_keys);
        Result<profiles::ApplyResult> r = Status::not_found("");
        {
            pyb::gil_scoped_release release;
            r = p_->apply(b);
        }
        raise_if_error(r.is_ok() ? Status::ok() : r.status());
        pyb::dict d;
        d["applied"] = r.value().applied;
        d["stale"] = r.value().stale;
        d["duplicate_keys"] = r.value().duplicate_keys;
        d["unknown_items"] = r.value().unknown_items;
        return d;
    }

    static void check(const pyb::array& users, const pyb::array& items, const pyb::array& types,
                      const pyb::array& watch_ms, const pyb::array& duration_ms, const pyb::array& ts_ms,
                      const pyb::array& seq, const std::optional<pyb::array>& event_keys) {
        raise_if_error(Profiles::check(batch_of(users, items, types, watch_ms, duration_ms, ts_ms, seq, event_keys)));
    }

    static profiles::EventBatch batch_of(const pyb::array& users, const pyb::array& items, const pyb::array& types,
                                         const pyb::array& watch_ms, const pyb::array& duration_ms,
                                         const pyb::array& ts_ms, const pyb::array& seq,
                                         const std::optional<pyb::array>& event_keys) {
        require_uint64_vector(users, "users");
        const pyb::ssize_t n = users.shape(0);
        profiles::EventBatch b;
        b.n = static_cast<std::size_t>(n);
        b.users = static_cast<const std::uint64_t*>(users.data());
        b.items = column<std::uint64_t>(items, "items", n);
        b.types = column<std::uint8_t>(types, "types", n);
        b.watch_ms = column<std::uint32_t>(watch_ms, "watch_ms", n);
        b.duration_ms = column<std::uint32_t>(duration_ms, "duration_ms", n);
        b.ts_ms = column<std::int64_t>(ts_ms, "ts_ms", n);
        b.seq = column<std::uint64_t>(seq, "seq", n);
        if (event_keys) b.event_keys = column<std::uint64_t>(*event_keys, "event_keys", n);
        return b;
    }

    pyb::tuple user_vectors(const pyb::array& users, std::int64_t now_ms) const {
        require_uint64_vector(users, "users");
        const pyb::ssize_t n = users.shape(0);
        const auto d = static_cast<pyb::ssize_t>(dims());
        pyb::array_t<float> lt({n, d}), ss({n, d});
        pyb::array_t<bool> found(n);
        const auto* k = static_cast<const std::uint64_t*>(users.data());
        float* l = lt.mutable_data();
        float* s = ss.mutable_data();
        bool* f = found.mutable_data();
        {
            pyb::gil_scoped_release release;
            p_->user_vectors(k, static_cast<std::size_t>(n), now_ms, l, s, f);
        }
        return pyb::make_tuple(lt, ss, found);
    }

    pyb::tuple user_words(const pyb::array& users) const {
        require_uint64_vector(users, "users");
        const pyb::ssize_t n = users.shape(0);
        pyb::array_t<std::uint64_t> words({n, static_cast<pyb::ssize_t>(profiles::kUserWords)});
        pyb::array_t<bool> found(n);
        const auto* k = static_cast<const std::uint64_t*>(users.data());
        std::uint64_t* w = words.mutable_data();
        bool* f = found.mutable_data();
        {
            pyb::gil_scoped_release release;
            p_->user_words(k, static_cast<std::size_t>(n), w, f);
        }
        return pyb::make_tuple(words, found);
    }

    // One (vectors, state) pair of bytes per user, None for a user without a row.
    pyb::list export_users(const pyb::array& users) const {
        require_uint64_vector(users, "users");
        const auto* k = static_cast<const std::uint64_t*>(users.data());
        const auto n = static_cast<std::size_t>(users.shape(0));
        std::vector<std::vector<char>> vectors(n), states(n);
        std::vector<char> found(n);
        {
            pyb::gil_scoped_release release;
            for (std::size_t i = 0; i < n; ++i) found[i] = p_->export_user(k[i], &vectors[i], &states[i]);
        }
        pyb::list out;
        for (std::size_t i = 0; i < n; ++i) {
            if (!found[i]) {
                out.append(pyb::none());
                continue;
            }
            out.append(pyb::make_tuple(pyb::bytes(vectors[i].data(), vectors[i].size()),
                                       pyb::bytes(states[i].data(), states[i].size())));
        }
        return out;
    }

    // Evicts users down to `keep`: (keys, [(vectors, state) bytes]) of those evicted.
    pyb::tuple evict_users(std::size_t keep) {
        std::vector<UserImage> images;
        {
            pyb::gil_scoped_release release;
            p_->evict_users(keep, &images);
        }
        pyb::array_t<std::uint64_t> keys(static_cast<pyb::ssize_t>(images.size()));
        pyb::list out;
        for (std::size_t i = 0; i < images.size(); ++i) {
            keys.mutable_data()[i] = images[i].user;
            out.append(pyb::make_tuple(pyb::bytes(images[i].vectors.data(), images[i].vectors.size()),
                                       pyb::bytes(images[i].state.data(), images[i].state.size())));
        }
        return pyb::make_tuple(keys, out);
    }

    bool erase_user(std::uint64_t user) {
        pyb::gil_scoped_release release;
        return p_->erase_user(user);
    }

    std::size_t import_users(const pyb::array& users, const std::vector<std::string>& vectors,
                             const std::vector<std::string>& states) {
        require_uint64_vector(users, "users");
        const auto n = static_cast<std::size_t>(users.shape(0));
        if (vectors.size() != n || states.size() != n)
            throw pyb::value_error("import_users needs one vectors and one state image per user");
        std::vector<std::vector<char>> v(n), s(n);
        for (std::size_t i = 0; i < n; ++i) {
            v[i].assign(vectors[i].begin(), vectors[i].end());
            s[i].assign(states[i].begin(), states[i].end());
        }
        const auto* k = static_cast<const std::uint64_t*>(users.data());
        Status status = Status::ok();
        std::size_t imported = 0;
        {
            pyb::gil_scoped_release release;
            status = p_->import_users(k, v.data(), s.data(), n, &imported);
        }
        raise_if_error(status);
        return imported;
    }

    pyb::array_t<bool> seen(std::uint64_t user, const pyb::array& items) const {
        require_uint64_vector(items, "items");
        const pyb::ssize_t n = items.shape(0);
        pyb::array_t<bool> out(n);
        const auto* k = static_cast<const std::uint64_t*>(items.data());
        bool* o = out.mutable_data();
        {
            pyb::gil_scoped_release release;
            p_->seen(user, k, static_cast<std::size_t>(n), o);
        }
        return out;
    }

    pyb::array_t<std::uint64_t> recent_items(std::uint64_t user) const {
        const std::vector<std::uint64_t> r = p_->recent_items(user);
        pyb::array_t<std::uint64_t> out(static_cast<pyb::ssize_t>(r.size()));
        std::copy(r.begin(), r.end(), out.mutable_data());
        return out;
    }

    // (keys uint64, ts_ms int64, weights float32), newest first.
    pyb::tuple recent_positives(std::uint64_t user) const {
        std::vector<profiles::RecentPositive> r;
        {
            pyb::gil_scoped_release release;
            r = p_->recent_positives(user);
        }
        const auto n = static_cast<pyb::ssize_t>(r.size());
        pyb::array_t<std::uint64_t> keys(n);
        pyb::array_t<std::int64_t> ts(n);
        pyb::array_t<float> weights(n);
        for (std::size_t i = 0; i < r.size(); ++i) {
            keys.mutable_data()[i] = r[i].item;
            ts.mutable_data()[i] = r[i].ts_ms;
            weights.mutable_data()[i] = r[i].weight;
        }
        return pyb::make_tuple(keys, ts, weights);
    }

    // (keys uint64, scores float32) of at most k items, best first.
    pyb::tuple related(std::uint64_t user, std::int64_t now_ms, std::int64_t k, float recency_decay,
                       float alpha) const {
        if (k < 1 || static_cast<std::uint64_t>(k) > profiles::kMaxRelated)
            throw pyb::value_error("k must be in 1.." + std::to_string(profiles::kMaxRelated) + ", got " +
                                   std::to_string(k));
        std::vector<std::uint64_t> keys(static_cast<std::size_t>(k));
        std::vector<float> scores(static_cast<std::size_t>(k));
        Result<std::size_t> m = Status::not_found("");
        {
            pyb::gil_scoped_release release;
            m = p_->related(user, now_ms, static_cast<std::size_t>(k), recency_decay, alpha, keys.data(), scores.data());
        }
        raise_if_error(m.is_ok() ? Status::ok() : m.status());
        const auto n = static_cast<pyb::ssize_t>(m.value());
        pyb::array_t<std::uint64_t> out_keys(n);
        pyb::array_t<float> out_scores(n);
        std::copy_n(keys.data(), m.value(), out_keys.mutable_data());
        std::copy_n(scores.data(), m.value(), out_scores.mutable_data());
        return pyb::make_tuple(out_keys, out_scores);
    }

    pyb::tuple items(const pyb::array& ids) const {
        require_uint64_vector(ids, "ids");
        const pyb::ssize_t n = ids.shape(0);
        pyb::array_t<float> vectors({n, static_cast<pyb::ssize_t>(dims())});
        pyb::array_t<std::uint64_t> words({n, static_cast<pyb::ssize_t>(profiles::kItemWords)});
        pyb::array_t<bool> found(n);
        const auto* k = static_cast<const std::uint64_t*>(ids.data());
        float* v = vectors.mutable_data();
        std::uint64_t* w = words.mutable_data();
        bool* f = found.mutable_data();
        {
            pyb::gil_scoped_release release;
            p_->items(k, static_cast<std::size_t>(n), v, w, f);
        }
        return pyb::make_tuple(vectors, words, found);
    }

    pyb::dict stats() const {
        const profiles::ProfilesStats s = p_->stats();
        pyb::dict d;
        d["applied"] = s.applied;
        d["stale"] = s.stale;
        d["duplicate_keys"] = s.duplicate_keys;
        d["unknown_items"] = s.unknown_items;
        d["users"] = s.users;
        d["items"] = s.items;
        d["user_evictions"] = s.user_table.evictions;
        d["item_evictions"] = s.item_table.evictions;
        d["memory_bytes"] = s.user_table.memory_bytes + s.item_table.memory_bytes;
        d["co_engagement_items"] = s.co_engagement.items;
        d["co_engagement_edges"] = s.co_engagement.edges;
        return d;
    }

    PySnapshot snapshot(std::uint64_t lsn) const {
        pyb::gil_scoped_release release;
        return PySnapshot(p_->snapshot(lsn));
    }

    std::size_t dims() const { return p_->options().dims; }

  private:
    std::unique_ptr<Profiles> p_;
};

}  // namespace

const profiles::Profiles& profiles_of(const pyb::handle& profiles) {
    return profiles.cast<const PyProfiles&>().profiles();
}

void register_profiles(pyb::module_& m) {
    m.attr("event_types") = std::vector<std::string>(profiles::kEventTypeNames, profiles::kEventTypeNames + profiles::kEventTypes);
    m.attr("item_stats") = std::vector<std::string>(profiles::kItemStatNames, profiles::kItemStatNames + profiles::kItemCounters);
    pyb::class_<PySnapshot>(m, "Snapshot", "A snapshot image in memory.")
        .def("write", &PySnapshot::write, pyb::arg("path"))
        .def("__len__", &PySnapshot::size);
    pyb::class_<ProfilesOptions>(m, "Options");
    m.def("options", &options_from, pyb::arg("dims"), pyb::arg("user_capacity"), pyb::arg("item_capacity"),
          pyb::arg("shards"), pyb::arg("seen_recent"), pyb::arg("seen_filter_bits"), pyb::arg("seen_filter_items"),
          pyb::arg("event_key_window"), pyb::arg("rule"), pyb::arg("user_lru") = true,
          pyb::arg("co_neighbours") = 64, pyb::arg("co_history") = 32, pyb::arg("co_positive_weight") = 0.5f,
          pyb::arg("co_half_life_seconds") = 0.0);
    m.attr("max_related") = profiles::kMaxRelated;
    pyb::class_<PyProfiles>(m, "Profiles", "User and item state with the event update rules.")
        .def(pyb::init(&PyProfiles::create), pyb::arg("options"))
        .def_static("load", &PyProfiles::load, pyb::arg("path"), pyb::arg("options"))
        .def("set_items", &PyProfiles::set_items, pyb::arg("ids"), pyb::arg("vectors"))
        .def("remove_items", &PyProfiles::remove_items, pyb::arg("ids"))
        .def("apply", &PyProfiles::apply, pyb::arg("users"), pyb::arg("items"), pyb::arg("types"),
             pyb::arg("watch_ms"), pyb::arg("duration_ms"), pyb::arg("ts_ms"), pyb::arg("seq"),
             pyb::arg("event_keys").none(true))
        .def_static("check", &PyProfiles::check, pyb::arg("users"), pyb::arg("items"), pyb::arg("types"),
                    pyb::arg("watch_ms"), pyb::arg("duration_ms"), pyb::arg("ts_ms"), pyb::arg("seq"),
                    pyb::arg("event_keys").none(true))
        .def("user_vectors", &PyProfiles::user_vectors, pyb::arg("users"), pyb::arg("now_ms"))
        .def("user_words", &PyProfiles::user_words, pyb::arg("users"))
        .def("export_users", &PyProfiles::export_users, pyb::arg("users"))
        .def("import_users", &PyProfiles::import_users, pyb::arg("users"), pyb::arg("vectors"),
             pyb::arg("states"))
        .def("evict_users", &PyProfiles::evict_users, pyb::arg("keep"))
        .def("erase_user", &PyProfiles::erase_user, pyb::arg("user"))
        .def("seen", &PyProfiles::seen, pyb::arg("user"), pyb::arg("items"))
        .def("recent_items", &PyProfiles::recent_items, pyb::arg("user"))
        .def("recent_positives", &PyProfiles::recent_positives, pyb::arg("user"))
        .def("related", &PyProfiles::related, pyb::arg("user"), pyb::arg("now_ms"), pyb::arg("k"),
             pyb::arg("recency_decay"), pyb::arg("alpha"))
        .def("items", &PyProfiles::items, pyb::arg("ids"))
        .def("stats", &PyProfiles::stats)
        .def("snapshot", &PyProfiles::snapshot, pyb::arg("lsn"))
        .def_property_readonly("dims", &PyProfiles::dims);
}

}  // namespace recserve::py
