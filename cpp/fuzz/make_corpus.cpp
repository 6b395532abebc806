// Writes the fuzzers' seed corpus with the real encoders: small valid files and images of each
// format (Index::save, save_model, Profiles::snapshot, Profiles::export_user, the binary event
// layout), a few valid and invalid JSON events, plus edge cases (empty, header only, truncated).
// The KPL corpus is Python's (fuzz_kpl.py --make-corpus).
//
//   fuzz_make_corpus <dir>     writes <dir>/<harness>/<name>, replacing files of the same name
//
// Deterministic: the same build writes the same bytes, so the committed corpus can be checked
// against a fresh run. Files named v<N>_... are images of an earlier format version, kept as
// they were written (the encoders write only the newest), so the old-version readers stay fuzzed.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "recserve/ann/index.hpp"
#include "recserve/ingest/blake2b.hpp"
#include "recserve/ingest/event_record.hpp"
#include "recserve/mlp/model_file.hpp"
#include "recserve/profiles/profiles.hpp"

namespace fs = std::filesystem;
using namespace recserve;

namespace {

fs::path g_root;

void die(const std::string& what) {
    std::fprintf(stderr, "fuzz_make_corpus: %s\n", what.c_str());
    std::exit(1);
}

void check(const Status& s, const char* what) {
    if (!s.is_ok()) die(std::string(what) + ": " + s.message());
}

void put(const char* harness, const std::string& name, std::string_view bytes) {
    const fs::path dir = g_root / harness;
    fs::create_directories(dir);
    std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) die("cannot write " + (dir / name).string());
}

std::string slurp(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Puts a file that an encoder wrote to a scratch path, and its first `cut` bytes as well.
void put_file(const char* harness, const std::string& name, const fs::path& written, std::size_t cut = 0) {
    const std::string bytes = slurp(written);
    put(harness, name, bytes);
    if (cut != 0 && cut < bytes.size()) put(harness, name + ".truncated", bytes.substr(0, cut));
    fs::remove(written);
}

std::vector<float> gaussian(std::size_t n, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

// ---- ANN index files ----------------------------------------------------------------------
void index_files(const fs::path& scratch) {
    struct Case {
        const char* name;
        ann::IndexOptions o;
        std::size_t items, removed;
        bool compact;
    };
    std::vector<Case> cases;
    {
        ann::IndexOptions o;
        o.dims = 3, o.metric = ann::Metric::kL2, o.dtype = ann::Dtype::kFloat32, o.M = 2, o.ef_construction = 8;
        o.compact_threshold = 0.0;
        cases.push_back({"f32_l2_m2_empty.rsi", o, 0, 0, false});
        cases.push_back({"f32_l2_m2_12items.rsi", o, 12, 0, false});
        o.metric = ann::Metric::kIp;
        cases.push_back({"f32_ip_m2_20items_tombstones.rsi", o, 20, 5, false});
    }
    {
        ann::IndexOptions o;
        o.dims = 8, o.metric = ann::Metric::kCosine, o.dtype = ann::Dtype::kInt8, o.M = 3, o.ef_construction = 16;
        o.compact_threshold = 0.0;
        cases.push_back({"i8_cosine_m3_24items_free_slots.rsi", o, 24, 6, true});
        o.rerank = true;
        o.compact_threshold = 0.25;
        o.seed = 42;
        cases.push_back({"i8_cosine_rerank_m3_16items.rsi", o, 16, 0, false});
    }
    for (const Case& c : cases) {
        auto made = ann::Index::create(c.o);
        if (!made.is_ok()) die(made.status().message());
        ann::Index& index = *made.value();
        std::vector<std::uint64_t> ids(c.items);
        for (std::size_t i = 0; i < c.items; ++i) ids[i] = 1000 + 7 * i;
        const std::vector<float> v = gaussian(c.items * c.o.dims, static_cast<std::uint32_t>(c.items));
        if (c.items) check(index.add(ids.data(), v.data(), c.items, 1), "Index::add");
        std::vector<std::uint64_t> missing;
        if (c.removed) index.remove(ids.data(), c.removed, &missing);
        if (c.compact) index.compact();
        const fs::path path = scratch / c.name;
        check(index.save(path.string()), "Index::save");
        put_file("index_file", c.name, path, c.items ? 200 : 0);
    }
    put("index_file", "empty", "");
    put("index_file", "magic_only", "RSVANNIX");
}

// ---- ranker model files -------------------------------------------------------------------
mlp::Model float_model(const std::vector<std::uint32_t>& widths, std::uint32_t seed) {
    mlp::Model m;
    std::mt19937 rng(seed);
    std::normal_distribution<float> w(0.0f, 0.5f);
    for (std::size_t i = 0; i + 1 < widths.size(); ++i) {
        mlp::Layer& l = m.layers.emplace_back();
        l.in = widths[i];
        l.out = widths[i + 1];
        for (std::size_t j = 0; j < std::size_t{l.in} * l.out; ++j) l.weight.push_back(w(rng));
        for (std::size_t j = 0; j < l.out; ++j) l.bias.push_back(w(rng));
    }
    for (std::uint32_t h = 0; h < widths.back(); ++h) {
        m.heads.push_back(h == 0 ? "p_complete" : "head" + std::to_string(h));
        m.activations.push_back(h + 1 == widths.back() && h > 0 ? mlp::Activation::kIdentity : mlp::Activation::kSigmoid);
    }
    m.metadata = R"({"feature_spec": {"names": ["a", "b"]}, "blend": {"p_complete": 1.0}})";
    return m;
}

void model_files(const fs::path& scratch) {
    const auto save = [&](const char* name, const mlp::Model& m, std::size_t cut) {
        const fs::path path = scratch / name;
        check(mlp::save_model(path.string(), m), "save_model");
        put_file("model_file", name, path, cut);
    };
    const mlp::Model f = float_model({4, 3, 2}, 1);
    save("f32_4x3x2.rsm", f, 100);
    mlp::Model single = float_model({2, 1}, 2);
    single.metadata.clear();
    save("f32_2x1_no_metadata.rsm", single, 0);
    const mlp::Model big = float_model({6, 5, 4, 3}, 3);
    auto q = mlp::quantize(big, std::vector<float>{0.5f, 1.0f, 2.0f, 1.0f, 0.25f, 1.5f});
    if (!q.is_ok()) die(q.status().message());
    save("i8_6x5x4x3_input_scale.rsm", q.value(), 120);
    auto q2 = mlp::quantize(f, {});
    if (!q2.is_ok()) die(q2.status().message());
    save("i8_4x3x2.rsm", q2.value(), 0);
    put("model_file", "empty", "");
    put("model_file", "magic_only", "RSRANKER");
}

// ---- profiles: snapshots and user images ----------------------------------------------------
// The options the snapshot and user_state harnesses default to (dims 4, seen {8, 64, 4}).
profiles::ProfilesOptions small_options(std::size_t dims = 4, profiles::SeenOptions seen = {8, 64, 4},
                                        std::uint32_t window = 8) {
    profiles::ProfilesOptions o;
    o.dims = dims;
    o.user_capacity = o.item_capacity = 64;
    o.shards = 4;
    o.seen = seen;
    o.event_key_window = window;
    return o;
}

// Items 1..30 take events; the first `with_vectors` of them have vectors (positives on those
// fill the recent positives and the co-engagement index).
std::unique_ptr<profiles::Profiles> busy_profiles(const profiles::ProfilesOptions& o, std::size_t users,
                                                  std::size_t events, std::uint32_t seed, std::size_t with_vectors = 3) {
    auto made = profiles::Profiles::create(o);
    if (!made.is_ok()) die(made.status().message());
    auto p = std::move(made).value();
    std::vector<std::uint64_t> item_ids;
    for (std::uint64_t i = 1; i <= with_vectors; ++i) item_ids.push_back(i);
    const std::vector<float> vectors = gaussian(item_ids.size() * o.dims, seed);
    check(p->set_items(item_ids.data(), vectors.data(), item_ids.size()), "set_items");
    std::mt19937_64 rng(seed);
    std::vector<std::uint64_t> u(events), it(events), seq(events), keys(events);
    std::vector<std::uint8_t> types(events);
    std::vector<std::uint32_t> watch(events), duration(events, 10000);
    std::vector<std::int64_t> ts(events);
    for (std::size_t i = 0; i < events; ++i) {
        u[i] = 10 + rng() % users;
        it[i] = 1 + rng() % 30;  // most items have no vector: counted, not moved
        seq[i] = i + 1;
        keys[i] = 0x1000 + i;
        types[i] = static_cast<std::uint8_t>(rng() % profiles::kEventTypes);
        watch[i] = static_cast<std::uint32_t>(rng() % 15000);
        ts[i] = static_cast<std::int64_t>(1000 * i);
    }
    profiles::EventBatch batch{events, u.data(), it.data(), types.data(), watch.data(), duration.data(), ts.data(),
                               seq.data(), keys.data()};
    auto applied = p->apply(batch);
    if (!applied.is_ok()) die(applied.status().message());
    return p;
}

void snapshots() {
    const auto snap = [](const char* name, const profiles::Profiles& p, std::size_t cut) {
        const std::vector<char> bytes = p.snapshot(99);
        put("snapshot", name, std::string_view(bytes.data(), bytes.size()));
        if (cut) put("snapshot", std::string(name) + ".truncated", std::string_view(bytes.data(), cut));
    };
    auto empty = profiles::Profiles::create(small_options());
    if (!empty.is_ok()) die(empty.status().message());
    snap("empty_dims4.snap", *empty.value(), 0);
    snap("3users_40events_dims4.snap", *busy_profiles(small_options(), 3, 40, 1), 150);
    // Enough events per user to wrap the seen ring, fill both filter generations and the key window.
    snap("2users_300events_dims4.snap", *busy_profiles(small_options(), 2, 300, 2), 0);
    snap("2users_60events_dims2_recent4_bits128.snap", *busy_profiles(small_options(2, {4, 128, 8}, 4), 2, 60, 3), 0);
    // Many positives on 12 items: a co-engagement index with full lists (4 neighbours each).
    profiles::ProfilesOptions few = small_options();
    few.co_engagement.neighbours = 4;
    few.co_engagement.history = 6;
    few.co_engagement.half_life_seconds = 30;
    snap("4users_200events_coengagement_dims4.snap", *busy_profiles(few, 4, 200, 6, 12), 0);
    put("snapshot", "empty", "");
}

std::string chunk(std::string_view bytes) {
    const auto n = static_cast<std::uint32_t>(bytes.size());
    std::string out(reinterpret_cast<const char*>(&n), sizeof n);
    out.append(bytes);
    return out;
}

std::string user_chunks(std::uint64_t user, const std::vector<char>& vectors, const std::vector<char>& state) {
    return chunk(std::string_view(reinterpret_cast<const char*>(&user), sizeof user)) +
           chunk(std::string_view(vectors.data(), vectors.size())) + chunk(std::string_view(state.data(), state.size()));
}

void user_images() {
    auto p = busy_profiles(small_options(), 3, 300, 4);
    std::string all;
    for (std::uint64_t user = 10; user < 13; ++user) {
        std::vector<char> vectors, state;
        if (!p->export_user(user, &vectors, &state)) die("export_user found no user " + std::to_string(user));
        const std::string one = user_chunks(user, vectors, state);
        put("user_state", "user" + std::to_string(user) + ".chunks", one);
        all += one;
    }
    put("user_state", "3users.chunks", all);
    // A user with a long list of recent positives (30 items have vectors).
    auto positive = busy_profiles(small_options(), 1, 400, 7, 30);
    std::vector<char> pv, ps;
    if (!positive->export_user(10, &pv, &ps)) die("export_user found no user 10");
    put("user_state", "user_recent_positives.chunks", user_chunks(10, pv, ps));
    // A user with one event: a short ring, no filter yet, one key.
    auto fresh = busy_profiles(small_options(), 1, 1, 5);
    std::vector<char> vectors, state;
    if (!fresh->export_user(10, &vectors, &state)) die("export_user found no user 10");
    put("user_state", "user_one_event.chunks", user_chunks(10, vectors, state));
    put("user_state", "truncated_state.chunks", user_chunks(11, vectors, std::vector<char>(state.begin(), state.begin() + 20)));
}

// ---- events: JSON, binary, batches ----------------------------------------------------------
const char* const kJsonEvents[] = {
    R"({"event_id":"e1","user_id":"u1","item_id":"v1","type":"impression"})",
    R"({"event_id": "e2", "user_id": "u1", "item_id": "v1", "type": "watch", "watch_ms": 5400, "duration_ms": 15000, "ts": 1700000000000})",
    R"({"event_id":"e3","user_id":"u\u00e9\ud83d\ude00","item_id":"v\n2","type":"like","session_id":null,"request_id":"r-9"})",
    R"(  {"type":"skip","item_id":"v3","user_id":"u2","event_id":"e4","watch_ms":800,"ts":null,"duration_ms":null}  )",
    R"({"event_id":"e5","user_id":"u2","item_id":"v4","type":"not_interested","session_id":"s1"})",
    // invalid, each in its own way
    R"({"event_id":"e6","user_id":"u3","item_id":"v5","type":"watch"})",
    R"({"event_id":"e7","user_id":"u3","item_id":"v5","type":"replay","extra":[1,{"a":[true,false,null]},2.5e-3]})",
    R"({"event_id":"e8","user_id":"u3","item_id":"v5","type":"share","watch_ms":-1})",
    R"({"event_id":"e9","user_id":"u3","item_id":"v5","type":"share","ts":18446744073709551616})",
    R"({"event_id":"e10","user_id":"\udc00","item_id":"v5","type":"comment"})",
    R"({"event_id":"e11","event_id":"e11","user_id":"u","item_id":"v","type":"follow"})",
    R"({"event_id":"e12","user_id":"u","item_id":"v","type":"follow")",
    "{}",
};

std::string binary_event(std::uint8_t type, std::uint8_t flags, std::uint32_t watch, std::uint32_t duration,
                         std::int64_t ts, std::uint64_t salt) {
    std::string r(ingest::kBinarySize, '\0');
    r[0] = static_cast<char>(ingest::kBinaryMagic);
    r[1] = static_cast<char>(type);
    r[2] = static_cast<char>(flags);
    const std::uint64_t keys[3] = {ingest::id_key("e", 1) + salt, ingest::id_key("u", 1), ingest::id_key("v", 1)};
    std::memcpy(r.data() + 4, keys, sizeof keys);
    std::memcpy(r.data() + 28, &watch, 4);
    std::memcpy(r.data() + 32, &duration, 4);
    std::memcpy(r.data() + 36, &ts, 8);
    return r;
}

void events() {
    int n = 0;
    for (const char* e : kJsonEvents) put("event_json", "event" + std::to_string(n++) + ".json", e);
    put("event_json", "empty", "");

    using ingest::kFlagDuration, ingest::kFlagTs, ingest::kFlagWatch;
    const std::vector<std::string> binary = {
        binary_event(0, 0, 0, 0, 0, 1),                                                        // impression, bare
        binary_event(1, kFlagWatch | kFlagDuration | kFlagTs, 5400, 15000, 1700000000000, 2),  // watch, all fields
        binary_event(1, kFlagWatch, 0, 0, 0, 3),                                               // watch_ms 0, present
        binary_event(7, kFlagWatch | kFlagTs, 900, 0, 0, 4),                                   // skip at ts 0
        binary_event(8, 0, 0, 0, 0, 5),                                                        // not_interested
        binary_event(1, 0, 0, 0, 0, 6),                                                        // bad: watch without watch_ms
        binary_event(9, 0, 0, 0, 0, 7),                                                        // bad: unknown type
    };
    for (std::size_t i = 0; i < binary.size(); ++i) put("event_binary", "record" + std::to_string(i) + ".bin", binary[i]);
    put("event_binary", "short.bin", binary[1].substr(0, 43));

    // Batches: binary, JSON, a KPL aggregate's magic, a null span (one 0x00 byte), garbage.
    std::string mixed = chunk(binary[0]) + chunk(kJsonEvents[1]) + chunk("\xF3\x89\x9A\xC2rest") + chunk(std::string(1, '\0')) +
                        chunk(binary[5]) + chunk("garbage") + chunk("") + chunk(kJsonEvents[5]);
    put("record_batch", "mixed.chunks", mixed);
    std::string good;
    for (std::size_t i = 0; i < 5; ++i) good += chunk(binary[i]);
    for (std::size_t i = 0; i < 5; ++i) good += chunk(kJsonEvents[i]);
    put("record_batch", "valid10.chunks", good);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) die("usage: fuzz_make_corpus <corpus dir>");
    g_root = argv[1];
    const fs::path scratch = fs::temp_directory_path() / ("recserve-make-corpus-" + std::to_string(::getpid()));
    fs::create_directories(scratch);
    index_files(scratch);
    model_files(scratch);
    snapshots();
    user_images();
    events();
    fs::remove_all(scratch);
    return 0;
}
