// recserve._core.ann: the graph index. Inputs are checked here, then the GIL is released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>

#include "errors.hpp"
#include "handles.hpp"
#include "recserve/ann/index.hpp"

namespace recserve::py {
namespace {

using ann::Index;

Result<ann::IndexOptions> make_options(std::size_t dims, const std::string& metric, const std::string& dtype,
                                       std::size_t M, std::size_t ef_construction, bool rerank, std::uint64_t seed,
                                       double compact_threshold) {
    ann::IndexOptions o;
    o.dims = dims;
    auto m = ann::parse_metric(metric);
    if (!m.is_ok()) return m.status();
    auto d = ann::parse_dtype(dtype);
    if (!d.is_ok()) return d.status();
    o.metric = m.value();
    o.dtype = d.value();
    o.M = M;
    o.ef_construction = ef_construction;
    o.rerank = rerank;
    o.seed = seed;
    o.compact_threshold = compact_threshold;
    return o;
}

class PyIndex {
  public:
    explicit PyIndex(std::unique_ptr<Index> index) : index_(std::move(index)) {}

    static PyIndex create(std::size_t dims, const std::string& metric, const std::string& dtype, std::size_t M,
                          std::size_t ef_construction, bool rerank, std::uint64_t seed, double compact_threshold) {
        auto o = make_options(dims, metric, dtype, M, ef_construction, rerank, seed, compact_threshold);
        raise_if_error(o.is_ok() ? Status::ok() : o.status());
        auto index = Index::create(o.value());
        raise_if_error(index.is_ok() ? Status::ok() : index.status());
        return PyIndex(std::move(index).value());
    }

    static PyIndex load(const std::string& path, std::optional<double> compact_threshold) {
        Result<std::unique_ptr<Index>> index = Status::io_error("not loaded");
        {
            pyb::gil_scoped_release release;
            index = Index::load(path, compact_threshold);
        }
        raise_if_error(index.is_ok() ? Status::ok() : index.status());
        return PyIndex(std::move(index).value());
    }

    void add(const pyb::array& ids, const pyb::array& vectors, std::size_t threads) {
        require_id_rows(ids, vectors, index_->options().dims);
        const auto* id_ptr = static_cast<const std::uint64_t*>(ids.data());
        const auto* vec_ptr = static_cast<const float*>(vectors.data());
        const auto n = static_cast<std::size_t>(ids.shape(0));
        Status st;
        {
            pyb::gil_scoped_release release;
            st = index_->add(id_ptr, vec_ptr, n, threads);
        }
        raise_if_error(st);
    }

    pyb::tuple search(const pyb::array& queries, std::size_t k, std::size_t ef, const pyb::object& exclude) const {
        require_float32(queries, "queries", 2);
        check_dims(queries, "queries");
        ann::SearchParams params;
        params.ef = ef;
        pyb::array exclude_array;
        if (!exclude.is_none()) {
            exclude_array = pyb::reinterpret_borrow<pyb::array>(exclude);
            require_uint64_vector(exclude_array, "exclude");
            params.exclude = static_cast<const std::uint64_t*>(exclude_array.data());
            params.exclude_count = static_cast<std::size_t>(exclude_array.shape(0));
        }
        const auto nq = static_cast<std::size_t>(queries.shape(0));
        if (k < 1) throw pyb::value_error("k must be >= 1, got " + std::to_string(k));
        pyb::array_t<std::uint64_t> ids({nq, k});
        pyb::array_t<float> dist({nq, k});
        const auto* q = static_cast<const float*>(queries.data());
        std::uint64_t* id_out = ids.mutable_data();
        float* dist_out = dist.mutable_data();
        Status st;
        {
            pyb::gil_scoped_release release;
            st = index_->search(q, nq, k, params, id_out, dist_out);
        }
        raise_if_error(st);
        return pyb::make_tuple(ids, dist);
    }

    pyb::tuple remove(const pyb::array& ids) {
        require_uint64_vector(ids, "ids");
        const auto* p = static_cast<const std::uint64_t*>(ids.data());
        const auto n = static_cast<std::size_t>(ids.shape(0));
        std::vector<std::uint64_t> missing;
        std::size_t removed = 0;
        {
            pyb::gil_scoped_release release;
            removed = index_->remove(p, n, &missing);
        }
        pyb::array_t<std::uint64_t> missing_array(static_cast<pyb::ssize_t>(missing.size()));
        std::copy(missing.begin(), missing.end(), missing_array.mutable_data());
        return pyb::make_tuple(removed, missing_array);
    }

    std::size_t compact() {
        pyb::gil_scoped_release release;
        return index_->compact();
    }

    void save(const std::string& path) const {
        Status st;
        {
            pyb::gil_scoped_release release;
            st = index_->save(path);
        }
        raise_if_error(st);
    }

    pyb::dict stats() const {
        const ann::IndexStats s = index_->stats();
        pyb::dict d;
        d["live"] = s.live;
        d["slots"] = s.slots;
        d["tombstones"] = s.tombstones;
        d["free_slots"] = s.free_slots;
        d["levels"] = s.levels;
        d["memory_bytes"] = s.memory_bytes;
        d["isa"] = s.isa;
        return d;
    }

    const ann::IndexOptions& options() const { return index_->options(); }
    std::size_t size() const { return index_->size(); }
    const Index& index() const { return *index_; }
    bool contains(std::uint64_t id) const { return index_->contains(id); }

  private:
    void check_dims(const pyb::array& a, const char* what) const {
        const std::size_t dims = index_->options().dims;
        if (static_cast<std::size_t>(a.shape(1)) != dims)
            throw pyb::value_error(std::string(what) + " must have shape (n, " + std::to_string(dims) + "), got " +
                                   shape_of(a));
    }

    std::unique_ptr<Index> index_;
};

}  // namespace

const ann::Index& index_of(const pyb::handle& index) { return index.cast<const PyIndex&>().index(); }

void register_ann(pyb::module_& m) {
    m.attr("MISSING_ID") = pyb::int_(ann::kMissingId);
    pyb::class_<PyIndex>(m, "Index")
        .def(pyb::init(&PyIndex::create), pyb::arg("dims"), pyb::arg("metric"), pyb::arg("dtype"), pyb::arg("M"),
             pyb::arg("ef_construction"), pyb::arg("rerank"), pyb::arg("seed"), pyb::arg("compact_threshold"))
        .def_static("load", &PyIndex::load, pyb::arg("path"), pyb::arg("compact_threshold"))
        .def("add", &PyIndex::add, pyb::arg("ids"), pyb::arg("vectors"), pyb::arg("threads"))
        .def("search", &PyIndex::search, pyb::arg("queries"), pyb::arg("k"), pyb::arg("ef"), pyb::arg("exclude"))
        .def("remove", &PyIndex::remove, pyb::arg("ids"))
        .def("compact", &PyIndex::compact)
        .def("save", &PyIndex::save, pyb::arg("path"))
        .def("stats", &PyIndex::stats)
        .def("contains", &PyIndex::contains, pyb::arg("id"))
        .def("__len__", &PyIndex::size)
        .def_property_readonly("dims", [](const PyIndex& i) { return i.options().dims; })
        .def_property_readonly("metric", [](const PyIndex& i) { return std::string(ann::metric_name(i.options().metric)); })
        .def_property_readonly("dtype", [](const PyIndex& i) { return std::string(ann::dtype_name(i.options().dtype)); })
        .def_property_readonly("M", [](const PyIndex& i) { return i.options().M; })
        .def_property_readonly("ef_construction", [](const PyIndex& i) { return i.options().ef_construction; })
        .def_property_readonly("rerank", [](const PyIndex& i) { return i.options().rerank; });
}

}  // namespace recserve::py
