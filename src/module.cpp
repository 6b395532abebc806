// recserve._core: one submodule per binding area; see python/recserve/ for the typed facades.
#include <pybind11/pybind11.h>

#include <sstream>

#include "errors.hpp"
#include "recserve/base/crc32c.hpp"

namespace recserve::py {

void register_simd(pyb::module_& m);
void register_ann(pyb::module_& m);
void register_mlp(pyb::module_& m);
void register_embed(pyb::module_& m);
void register_profiles(pyb::module_& m);
void register_ingest(pyb::module_& m);
void register_feed(pyb::module_& m);

pyb::object& corrupt_file_error() {
    // Leaked on purpose: destroying a Python object after the interpreter has finalised crashes.
    static auto* type = new pyb::object();
    return *type;
}

void raise_if_error(const Status& st) {
    switch (st.code()) {
        case StatusCode::kOk: return;
        case StatusCode::kInvalidArgument: throw pyb::value_error(st.message());
        case StatusCode::kNotFound: {
            PyErr_SetString(PyExc_FileNotFoundError, st.message().c_str());
            throw pyb::error_already_set();
        }
        case StatusCode::kCorrupt: {
            PyErr_SetString(corrupt_file_error().ptr(), st.message().c_str());
            throw pyb::error_already_set();
        }
        case StatusCode::kIoError: {
            PyErr_SetString(PyExc_OSError, st.message().c_str());
            throw pyb::error_already_set();
        }
        case StatusCode::kUnavailable: throw std::runtime_error(st.message());
    }
}

std::string shape_of(const pyb::array& a) {
    std::ostringstream out;
    out << "(";
    for (pyb::ssize_t i = 0; i < a.ndim(); ++i) out << (i ? ", " : "") << a.shape(i);
    out << (a.ndim() == 1 ? ",)" : ")");
    return out.str();
}

void require_float32(const pyb::array& a, const char* what, int ndim) {
    if (!a.dtype().is(pyb::dtype::of<float>()))
        throw pyb::type_error(std::string(what) + " must be a float32 array, got dtype " +
                              std::string(pyb::str(a.dtype())));
    if (a.ndim() != ndim)
        throw pyb::value_error(std::string(what) + " must have " + std::to_string(ndim) + " dimension(s), got shape " +
                               shape_of(a));
    if (!(a.flags() & pyb::array::c_style))
        throw pyb::value_error(std::string(what) + " must be C-contiguous (use numpy.ascontiguousarray)");
}

void require_uint64_vector(const pyb::array& a, const char* what) {
    if (!a.dtype().is(pyb::dtype::of<std::uint64_t>()))
        throw pyb::type_error(std::string(what) + " must be a uint64 array, got dtype " + std::string(pyb::str(a.dtype())));
    if (a.ndim() != 1) throw pyb::value_error(std::string(what) + " must be 1-dimensional, got shape " + shape_of(a));
    if (!(a.flags() & pyb::array::c_style))
        throw pyb::value_error(std::string(what) + " must be C-contiguous (use numpy.ascontiguousarray)");
}

void require_id_rows(const pyb::array& ids, const pyb::array& vectors, std::size_t dims) {
    require_uint64_vector(ids, "ids");
    require_float32(vectors, "vectors", 2);
    if (static_cast<std::size_t>(vectors.shape(1)) != dims)
        throw pyb::value_error("vectors must have " + std::to_string(dims) + " columns: shape (n, " +
                               std::to_string(dims) + "), got " + shape_of(vectors));
    if (vectors.shape(0) != ids.shape(0))
        throw pyb::value_error("ids and vectors must have the same length, got " + std::to_string(ids.shape(0)) +
                               " ids and " + std::to_string(vectors.shape(0)) + " vectors");
}

}  // namespace recserve::py

PYBIND11_MODULE(_core, m) {
    namespace py = recserve::py;
    m.doc() = "recserve's C++ core. Private: use the typed facades in recserve.*";
    py::corrupt_file_error() = pybind11::reinterpret_steal<pybind11::object>(
        PyErr_NewExceptionWithDoc("recserve._core.CorruptFileError",
                                  "A file failed its checksum or structural checks and was not loaded.",
                                  PyExc_ValueError, nullptr));
    m.attr("CorruptFileError") = py::corrupt_file_error();
    m.def(
        "crc32c",
        [](const pybind11::buffer& data, std::uint32_t crc) {
            const pybind11::buffer_info info = data.request();
            if (info.ndim != 1 || info.itemsize != 1 || info.strides[0] != 1)
                throw pybind11::type_error("crc32c takes contiguous bytes");
            pybind11::gil_scoped_release release;
            return recserve::crc32c(info.ptr, static_cast<std::size_t>(info.size), crc);
        },
        pybind11::arg("data"), pybind11::arg("crc") = 0, "CRC-32C (Castagnoli) of bytes, continuing from crc.");
    auto simd = m.def_submodule("simd", "ISA detection and distance kernels");
    py::register_simd(simd);
    auto ann = m.def_submodule("ann", "graph index over item embeddings");
    py::register_ann(ann);
    auto mlp = m.def_submodule("mlp", "the int8 multi-task ranker and its model file");
    py::register_mlp(mlp);
    auto embed = m.def_submodule("embed", "the embedding table of user and item state");
    py::register_embed(embed);
    auto profiles = m.def_submodule("profiles", "user and item state and the event update rules");
    py::register_profiles(profiles);
    auto ingest = m.def_submodule("ingest", "Kinesis records decoded into event columns");
    py::register_ingest(ingest);
    auto feed = m.def_submodule("feed", "one page per call: the native feed pipeline and its feature rows");
    py::register_feed(feed);
}
