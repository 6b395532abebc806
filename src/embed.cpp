// recserve._core.embed: the embedding table. Inputs are checked here, then the GIL is released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "errors.hpp"
#include "recserve/embed/table.hpp"

namespace recserve::py {
namespace {

using embed::Table;

class PyTable {
  public:
    PyTable(std::size_t dims, std::size_t capacity, std::size_t shards, double ttl_seconds, std::uint32_t admit_after) {
        Result<std::unique_ptr<Table>> t = Table::create({dims, capacity, shards, ttl_seconds, admit_after});
        raise_if_error(t.is_ok() ? Status::ok() : t.status());
        table_ = std::move(t).value();
    }

    void set(const pyb::array& ids, const pyb::array& vectors) {
        require_id_rows(ids, vectors, dims());
        const auto* k = static_cast<const std::uint64_t*>(ids.data());
        const auto* v = static_cast<const float*>(vectors.data());
        const auto n = static_cast<std::size_t>(ids.shape(0));
        Status st;
        {
            pyb::gil_scoped_release release;
            st = table_->set(k, v, n);
        }
        raise_if_error(st);
    }

    pyb::tuple get(const pyb::array& ids) const {
        require_uint64_vector(ids, "ids");
        const auto n = static_cast<pyb::ssize_t>(ids.shape(0));
        pyb::array_t<float> out({n, static_cast<pyb::ssize_t>(dims())});
        pyb::array_t<bool> found(n);
        const auto* k = static_cast<const std::uint64_t*>(ids.data());
        float* o = out.mutable_data();
        bool* f = found.mutable_data();
        {
            pyb::gil_scoped_release release;
            table_->get(k, static_cast<std::size_t>(n), o, f);
        }
        return pyb::make_tuple(out, found);
    }

    std::size_t remove(const pyb::array& ids) {
        require_uint64_vector(ids, "ids");
        const auto* k = static_cast<const std::uint64_t*>(ids.data());
        const auto n = static_cast<std::size_t>(ids.shape(0));
        pyb::gil_scoped_release release;
        return table_->remove(k, n);
    }

    std::size_t expire() {
        pyb::gil_scoped_release release;
        return table_->expire();
    }

    pyb::dict stats() const {
        const embed::TableStats s = table_->stats();
        pyb::dict d;
        d["rows"] = s.rows;
        d["capacity"] = s.capacity;
        d["evictions"] = s.evictions;
        d["not_admitted"] = s.not_admitted;
        d["memory_bytes"] = s.memory_bytes;
        return d;
    }

    std::size_t size() const { return table_->size(); }
    std::size_t dims() const { return table_->options().dims; }
    const embed::TableOptions& options() const { return table_->options(); }

  private:
    std::unique_ptr<Table> table_;
};

}  // namespace

void register_embed(pyb::module_& m) {
    pyb::class_<PyTable>(m, "Table", "A collisionless uint64 -> float32[dims] table.")
        .def(pyb::init<std::size_t, std::size_t, std::size_t, double, std::uint32_t>(), pyb::arg("dims"),
             pyb::arg("capacity"), pyb::arg("shards"), pyb::arg("ttl_seconds"), pyb::arg("admit_after"))
        .def("set", &PyTable::set, pyb::arg("ids"), pyb::arg("vectors"))
        .def("get", &PyTable::get, pyb::arg("ids"))
        .def("remove", &PyTable::remove, pyb::arg("ids"))
        .def("expire", &PyTable::expire)
        .def("stats", &PyTable::stats)
        .def("__len__", &PyTable::size)
        .def_property_readonly("dims", &PyTable::dims)
        .def_property_readonly("capacity", [](const PyTable& t) { return t.options().capacity; })
        .def_property_readonly("shards", [](const PyTable& t) { return t.options().shards; })
        .def_property_readonly("ttl_seconds", [](const PyTable& t) { return t.options().ttl_seconds; })
        .def_property_readonly("admit_after", [](const PyTable& t) { return t.options().admit_after; });
}

}  // namespace recserve::py
