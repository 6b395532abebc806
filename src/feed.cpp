// recserve._core.feed: the native feed pipeline (one call per page, the GIL released once) and
// the feature rows it shares with training. Arrays are checked here; the core trusts them.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "errors.hpp"
#include "handles.hpp"
#include "recserve/feed/features.hpp"
#include "recserve/feed/item_columns.hpp"
#include "recserve/feed/open_pool.hpp"
#include "recserve/feed/pipeline.hpp"
#include "recserve/feed/served_memory.hpp"
#include "recserve/mlp/quantized_mlp.hpp"

namespace recserve::py {
namespace {

using feed::FeatureLayout;
using F32 = pyb::array_t<float, pyb::array::c_style>;
using F64 = pyb::array_t<double, pyb::array::c_style>;
using U64 = pyb::array_t<std::uint64_t, pyb::array::c_style>;
using I64 = pyb::array_t<std::int64_t, pyb::array::c_style>;

// Column order of feature_rows' scalars (python/recserve/features.py writes them in this order).
enum Scalar : std::size_t {
    kImpressions,
    kOutcome0,
    kCreatedAt = kOutcome0 + feed::kOutcomes,
    kNow,
    kEvents,
    kSessionLength,
    kUserImpressions,
    kUserCompletes,
    kUserSkips,
    kPosition,
    kRelated,
    kPositiveSimilarity,
    kRegionHours,
    kScalars,
};

// A feature layout that owns its normalisation.
class Layout {
  public:
    Layout(std::size_t dims, int version, const pyb::array& priors, const std::optional<pyb::array>& mean,
           const std::optional<pyb::array>& std) {
        if (dims < 1) throw pyb::value_error("dims must be >= 1");
        if (version != 1 && version != 2) throw pyb::value_error("version must be 1 or 2");
        layout_.dims = dims;
        layout_.version = version;
        const double* p = array_data<double>(priors, "priors", {static_cast<pyb::ssize_t>(feed::kOutcomes), 2});
        for (std::size_t o = 0; o < feed::kOutcomes; ++o) layout_.prior_mean[o] = p[2 * o], layout_.prior_strength[o] = p[2 * o + 1];
        if (mean.has_value() != std.has_value()) throw pyb::value_error("mean and std go together");
        if (mean) {
            const auto w = static_cast<pyb::ssize_t>(layout_.width());
            const float* m = array_data<float>(*mean, "mean", {w});
            const float* s = array_data<float>(*std, "std", {w});
            mean_.assign(m, m + w);
            std_.assign(s, s + w);
            layout_.mean = mean_.data();
            layout_.std = std_.data();
        }
    }
    Layout(const Layout&) = delete;
    Layout& operator=(const Layout&) = delete;
    const FeatureLayout& layout() const { return layout_; }

  private:
    FeatureLayout layout_;
    std::vector<float> mean_, std_;
};

F32 feature_rows(const Layout& layout, const pyb::array& long_term, const pyb::array& session, const pyb::array& items,
                 const pyb::array& scalars) {
    const FeatureLayout& l = layout.layout();
    const auto d = static_cast<pyb::ssize_t>(l.dims);
    const float* item_vectors = array_data<float>(items, "items", {-1, d});
    const pyb::ssize_t n = items.shape(0);
    const double* x = array_data<double>(scalars, "scalars", {n, static_cast<pyb::ssize_t>(kScalars)});
    auto per_row = [&](const pyb::array& a, const char* what) {  // (d,): one user for every row
        return std::make_pair(a.ndim() == 1 ? array_data<float>(a, what, {d}) : array_data<float>(a, what, {n, d}),
                              a.ndim() == 1 ? std::size_t{0} : l.dims);
    };
    const auto [long_ptr, long_step] = per_row(long_term, "long_term");
    const auto [session_ptr, session_step] = per_row(session, "session");
    F32 out({n, static_cast<pyb::ssize_t>(l.width())});
    float* o = out.mutable_data();
    {
        pyb::gil_scoped_release release;
        for (pyb::ssize_t i = 0; i < n; ++i) {
            const double* r = x + i * kScalars;
            const auto row = static_cast<std::size_t>(i);
            feed::UserInputs user{long_ptr + row * long_step, session_ptr + row * session_step, r[kEvents],
                                  r[kSessionLength], r[kUserImpressions], r[kUserCompletes], r[kUserSkips]};
            feed::ItemInputs item;
            item.vector = item_vectors + row * l.dims;
            item.impressions = r[kImpressions];
            for (std::size_t k = 0; k < feed::kOutcomes; ++k) item.outcomes[k] = r[kOutcome0 + k];
            item.created_at_s = r[kCreatedAt];
            const feed::Affinity a{static_cast<float>(r[kRelated]), static_cast<float>(r[kPositiveSimilarity]),
                                   static_cast<float>(r[kRegionHours])};
            feed::write_row(l, user, item, r[kNow], r[kPosition], a, o + row * l.width());
        }
    }
    return out;
}

pyb::tuple affinity(const pyb::array& items, const pyb::array& positives, const pyb::array& positive_ts, double now_ms,
                    const std::optional<pyb::array>& centroids) {
    const float* v = array_data<float>(items, "items", {-1, -1});
    const pyb::ssize_t n = items.shape(0), d = items.shape(1);
    const float* p = array_data<float>(positives, "positives", {-1, d});
    const pyb::ssize_t m = positives.shape(0);
    const std::int64_t* ts = array_data<std::int64_t>(positive_ts, "positive_ts", {m});
    const float* c = centroids ? array_data<float>(*centroids, "centroids", {-1, d}) : nullptr;
    const std::size_t k = centroids ? static_cast<std::size_t>(centroids->shape(0)) : 0;
    F32 similarity(n), hours(n);
    float* s = similarity.mutable_data();
    float* h = hours.mutable_data();
    {
        pyb::gil_scoped_release release;
        feed::affinity(v, static_cast<std::size_t>(n), static_cast<std::size_t>(d), p, ts, static_cast<std::size_t>(m),
                       now_ms, c, k, s, h);
    }
    return pyb::make_tuple(similarity, hours);
}

pyb::object query_vector(const pyb::array& long_term, const pyb::array& session, float session_weight) {
    const float* l = array_data<float>(long_term, "long_term", {-1});
    const float* s = array_data<float>(session, "session", {long_term.shape(0)});
    F32 query(long_term.shape(0));
    if (!feed::query_vector(l, s, static_cast<std::size_t>(long_term.shape(0)), session_weight, query.mutable_data()))
        return pyb::none();
    return query;
}

// A model with its layout and head weights, ready for build_page.
class Ranking {
  public:
    Ranking(pyb::object model, std::shared_ptr<Layout> layout, std::vector<float> head_weights)
        : model_(std::move(model)), layout_(std::move(layout)) {
        ranking_.model = &model_.cast<const mlp::QuantizedMlp&>();
        ranking_.layout = layout_->layout();
        ranking_.head_weights = std::move(head_weights);
        if (ranking_.model->input_dim() != ranking_.layout.width())
            throw pyb::value_error("the model takes " + std::to_string(ranking_.model->input_dim()) +
                                   " inputs; the layout gives " + std::to_string(ranking_.layout.width()));
        if (ranking_.head_weights.size() != ranking_.model->output_dim())
            throw pyb::value_error("need one blend weight per head (" + std::to_string(ranking_.model->output_dim()) + ")");
    }
    const feed::Ranking& ranking() const { return ranking_; }

  private:
    pyb::object model_;  // keeps the QuantizedMlp alive
    std::shared_ptr<Layout> layout_;
    feed::Ranking ranking_;
};

pyb::tuple build_page(const pyb::handle& index, const pyb::handle& profiles, const feed::ItemColumns& columns,
                      const feed::ServedMemory& served, const feed::FeedParams& params, const Ranking& ranking,
                      std::uint64_t user, std::int64_t now_ms, std::size_t n, std::uint64_t seed,
                      const feed::OpenPool* open_pool, std::size_t explore_pool, double explore_share,
                      const pyb::array& trending, const pyb::array& blocked,
                      const std::optional<pyb::array>& centroids, const std::array<double, 4>& quality) {
    const feed::Pipeline pipeline(index_of(index), profiles_of(profiles), columns, served);
    feed::PageRequest r;
    r.user = user;
    r.now_ms = now_ms;
    r.n = n;
    r.seed = seed;
    r.open_pool = open_pool;
    r.explore_pool = explore_pool;
    r.explore_share = explore_share;
    r.trending = array_data<std::uint64_t>(trending, "trending", {-1});
    r.trending_count = static_cast<std::size_t>(trending.shape(0));
    r.blocked_creators = array_data<std::int64_t>(blocked, "blocked", {-1});
    r.blocked_count = static_cast<std::size_t>(blocked.shape(0));
    if (centroids) {
        r.centroids = array_data<float>(*centroids, "centroids", {-1, static_cast<pyb::ssize_t>(ranking.ranking().layout.dims)});
        r.centroid_count = static_cast<std::size_t>(centroids->shape(0));
    }
    r.quality = {quality[0], quality[1], quality[2], quality[3]};
    feed::Page page;
    Status st;
    {
        pyb::gil_scoped_release release;
        st = pipeline.build(params, r, ranking.ranking(), &page);
    }
    raise_if_error(st);
    const auto m = static_cast<pyb::ssize_t>(page.keys.size());
    U64 keys(m);
    F32 scores(m);
    pyb::array_t<std::int8_t> sources(m);
    std::copy(page.keys.begin(), page.keys.end(), keys.mutable_data());
    std::copy(page.scores.begin(), page.scores.end(), scores.mutable_data());
    std::copy(page.sources.begin(), page.sources.end(), sources.mutable_data());
    const feed::StageSeconds& t = page.seconds;
    return pyb::make_tuple(page.has_direction, keys, scores, sources, page.candidates,
                           pyb::make_tuple(t.retrieve, t.filter, t.rank, t.total));
}

pyb::tuple user_search(const pyb::handle& index, const pyb::handle& profiles, const feed::ItemColumns& columns,
                       const feed::ServedMemory& served, std::uint64_t user, const pyb::array& query, std::size_t k,
                       std::size_t ef, const pyb::array& blocked) {
    const feed::Pipeline pipeline(index_of(index), profiles_of(profiles), columns, served);
    const float* q = array_data<float>(query, "query", {static_cast<pyb::ssize_t>(index_of(index).options().dims)});
    const std::int64_t* b = array_data<std::int64_t>(blocked, "blocked", {-1});
    std::vector<std::uint64_t> ids;
    std::vector<float> distances;
    Status st;
    {
        pyb::gil_scoped_release release;
        st = pipeline.search(user, b, static_cast<std::size_t>(blocked.shape(0)), q, k, ef, &ids, &distances);
    }
    raise_if_error(st);
    U64 out_ids(static_cast<pyb::ssize_t>(ids.size()));
    F32 out_distances(static_cast<pyb::ssize_t>(distances.size()));
    std::copy(ids.begin(), ids.end(), out_ids.mutable_data());
    std::copy(distances.begin(), distances.end(), out_distances.mutable_data());
    return pyb::make_tuple(out_ids, out_distances);
}

}  // namespace

void register_feed(pyb::module_& m) {
    m.attr("SCALAR_COLUMNS") = pyb::int_(static_cast<int>(kScalars));
    pyb::class_<Layout, std::shared_ptr<Layout>>(m, "Layout", "A feature layout and its normalisation.")
        .def(pyb::init<std::size_t, int, const pyb::array&, const std::optional<pyb::array>&,
                       const std::optional<pyb::array>&>(),
             pyb::arg("dims"), pyb::arg("version"), pyb::arg("priors"), pyb::arg("mean").none(true),
             pyb::arg("std").none(true))
        .def_property_readonly("width", [](const Layout& l) { return l.layout().width(); });
    m.def("feature_rows", &feature_rows, pyb::arg("layout"), pyb::arg("long_term"), pyb::arg("session"),
          pyb::arg("items"), pyb::arg("scalars"));
    m.def("affinity", &affinity, pyb::arg("items"), pyb::arg("positives"), pyb::arg("positive_ts"),
          pyb::arg("now_ms"), pyb::arg("centroids").none(true));
    m.def("query_vector", &query_vector, pyb::arg("long_term"), pyb::arg("session"), pyb::arg("session_weight"));

    pyb::class_<feed::ItemColumns>(m, "ItemColumns", "The catalogue's columns the feed reads per candidate.")
        .def(pyb::init<>())
        .def("set", [](feed::ItemColumns& c, const pyb::array& keys, const pyb::array& created, const pyb::array& creators) {
                 const auto n = keys.ndim() == 1 ? keys.shape(0) : -2;
                 c.set(array_data<std::uint64_t>(keys, "keys", {n}), array_data<double>(created, "created_at_s", {n}),
                       array_data<std::int64_t>(creators, "creators", {n}), static_cast<std::size_t>(n));
             }, pyb::arg("keys"), pyb::arg("created_at_s"), pyb::arg("creators"))
        .def("take_down", [](feed::ItemColumns& c, const pyb::array& keys) {
                 c.take_down(array_data<std::uint64_t>(keys, "keys", {-1}), static_cast<std::size_t>(keys.shape(0)));
             }, pyb::arg("keys"))
        .def("lookup", [](const feed::ItemColumns& c, const pyb::array& keys) {
                 const std::uint64_t* k = array_data<std::uint64_t>(keys, "keys", {-1});
                 const auto n = keys.shape(0);
                 std::vector<feed::ItemColumn> out(static_cast<std::size_t>(n));
                 c.lookup(k, out.size(), out.data());
                 pyb::array_t<bool> live(n);
                 F64 created(n);
                 I64 creators(n);
                 for (pyb::ssize_t i = 0; i < n; ++i) {
                     const auto& col = out[static_cast<std::size_t>(i)];
                     live.mutable_data()[i] = col.live;
                     created.mutable_data()[i] = col.created_at_s;
                     creators.mutable_data()[i] = col.creator;
                 }
                 return pyb::make_tuple(live, created, creators);
             }, pyb::arg("keys"))
        .def("clear", &feed::ItemColumns::clear)
        .def("__len__", &feed::ItemColumns::size);

    pyb::class_<feed::ServedMemory>(m, "ServedMemory", "Items served lately per user, and session lengths.")
        .def(pyb::init<std::size_t, std::size_t, double>(), pyb::arg("per_user"), pyb::arg("users"),
             pyb::arg("session_timeout_s"))
        .def("recent", [](const feed::ServedMemory& s, std::uint64_t user) {
                 std::vector<std::uint64_t> out;
                 s.recent(user, &out);
                 U64 keys(static_cast<pyb::ssize_t>(out.size()));
                 std::copy(out.begin(), out.end(), keys.mutable_data());
                 return keys;
             }, pyb::arg("user"))
        .def("session_length", &feed::ServedMemory::session_length, pyb::arg("user"), pyb::arg("now_s"))
        .def("version", &feed::ServedMemory::version, pyb::arg("user"))
        .def("add", [](feed::ServedMemory& s, std::uint64_t user, const pyb::array& keys, double now_s) {
                 s.add(user, array_data<std::uint64_t>(keys, "keys", {-1}), static_cast<std::size_t>(keys.shape(0)), now_s);
             }, pyb::arg("user"), pyb::arg("keys"), pyb::arg("now_s"))
        .def("forget", &feed::ServedMemory::forget, pyb::arg("user"));

    pyb::class_<feed::OpenPool>(m, "OpenPool", "The items in open amplification tiers, sampled by seed.")
        .def(pyb::init<>())
        .def("add", &feed::OpenPool::add, pyb::arg("key"), pyb::arg("tier") = 0)
        .def("tiers", [](const feed::OpenPool& p, const pyb::array& keys) {
                 const std::uint64_t* k = array_data<std::uint64_t>(keys, "keys", {-1});
                 const auto n = static_cast<std::size_t>(keys.shape(0));
                 pyb::array_t<std::int8_t> out(static_cast<pyb::ssize_t>(n));
                 p.tiers(k, n, out.mutable_data());
                 return out;
             }, pyb::arg("keys"), "Each key's tier, -1 where not in the pool.")
        .def("discard", &feed::OpenPool::discard, pyb::arg("key"))
        .def("__contains__", &feed::OpenPool::contains, pyb::arg("key"))
        .def("__len__", &feed::OpenPool::size)
        .def("keys", [](const feed::OpenPool& p) {
            const std::vector<std::uint64_t> keys = p.keys();
            U64 out(static_cast<pyb::ssize_t>(keys.size()));
            std::copy(keys.begin(), keys.end(), out.mutable_data());
            return out;
        })
        .def("sample", [](const feed::OpenPool& p, std::size_t k, std::uint64_t seed) {
                 std::vector<std::uint64_t> keys;
                 p.sample(k, seed, &keys);
                 U64 out(static_cast<pyb::ssize_t>(keys.size()));
                 std::copy(keys.begin(), keys.end(), out.mutable_data());
                 return out;
             }, pyb::arg("k"), pyb::arg("seed"));
    m.def("explore_slots", &feed::explore_slots, pyb::arg("share"), pyb::arg("n"), pyb::arg("seed"));

    pyb::class_<feed::FeedParams>(m, "Params", "The feed settings the native pipeline reads.")
        .def(pyb::init<>())
        .def_readwrite("candidates", &feed::FeedParams::candidates)
        .def_readwrite("ef", &feed::FeedParams::ef)
        .def_readwrite("related", &feed::FeedParams::related)
        .def_readwrite("related_recency", &feed::FeedParams::related_recency)
        .def_readwrite("related_alpha", &feed::FeedParams::related_alpha)
        .def_readwrite("interest_queries", &feed::FeedParams::interest_queries)
        .def_readwrite("interest_candidates", &feed::FeedParams::interest_candidates)
        .def_readwrite("session_weight", &feed::FeedParams::session_weight)
        .def_readwrite("max_per_creator", &feed::FeedParams::max_per_creator)
        .def_readwrite("explore_relevance", &feed::FeedParams::explore_relevance)
        .def_readwrite("explore_relevance_decay", &feed::FeedParams::explore_relevance_decay)
        .def_readwrite("promoted_boost", &feed::FeedParams::promoted_boost)
        .def_readwrite("promoted_boost_views", &feed::FeedParams::promoted_boost_views)
        .def_readwrite("popularity_weight", &feed::FeedParams::popularity_weight)
        .def_readwrite("related_weight", &feed::FeedParams::related_weight)
        .def_readwrite("quality_weight", &feed::FeedParams::quality_weight)
        .def_readwrite("quality_prior_views", &feed::FeedParams::quality_prior_views)
        .def_readwrite("quality_optimism", &feed::FeedParams::quality_optimism);

    pyb::class_<Ranking>(m, "Ranking", "A model, its feature layout and the weight of each head.")
        .def(pyb::init<pyb::object, std::shared_ptr<Layout>, std::vector<float>>(), pyb::arg("model"),
             pyb::arg("layout"), pyb::arg("head_weights"));
    m.def("search", &user_search, pyb::arg("index"), pyb::arg("profiles"), pyb::arg("columns"), pyb::arg("served"),
          pyb::arg("user"), pyb::arg("query"), pyb::arg("k"), pyb::arg("ef"), pyb::arg("blocked"));
    m.def("build_page", &build_page, pyb::arg("index"), pyb::arg("profiles"), pyb::arg("columns"),
          pyb::arg("served"), pyb::arg("params"), pyb::arg("ranking"), pyb::arg("user"), pyb::arg("now_ms"),
          pyb::arg("n"), pyb::arg("seed"), pyb::arg("open_pool").none(true), pyb::arg("explore_pool"),
          pyb::arg("explore_share"), pyb::arg("trending"), pyb::arg("blocked"),
          pyb::arg("centroids").none(true), pyb::arg("quality"));
}

}  // namespace recserve::py
