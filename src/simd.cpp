// recserve._core.simd: which kernels run, and the kernels themselves for tests and benchmarks.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "errors.hpp"
#include "recserve/simd/kernel_table.hpp"

namespace recserve::py {
namespace {

const simd::KernelTable& table_for(const std::string& isa) {
    Result<const simd::KernelTable*> k = isa.empty() ? simd::active_kernels() : [&]() -> Result<const simd::KernelTable*> {
        auto parsed = simd::parse_isa(isa);
        if (!parsed.is_ok()) return parsed.status();
        return simd::kernels_for(parsed.value());
    }();
    if (!k.is_ok()) {
        if (k.status().code() == StatusCode::kUnavailable) throw pyb::value_error(k.status().message());
        raise_if_error(k.status());
    }
    return *k.value();
}

template <class T>
const T* vector_data(const pyb::array& a, const char* what, std::size_t dims) {
    if (!a.dtype().is(pyb::dtype::of<T>()))
        throw pyb::type_error(std::string(what) + " has dtype " + std::string(pyb::str(a.dtype())) +
                              ", expected " + std::string(pyb::str(pyb::dtype::of<T>())));
    if (a.ndim() != 1 || !(a.flags() & pyb::array::c_style))
        throw pyb::value_error(std::string(what) + " must be a C-contiguous vector, got shape " + shape_of(a));
    if (static_cast<std::size_t>(a.shape(0)) != dims)
        throw pyb::value_error("a and b must have the same length, got " + std::to_string(dims) + " and " +
                               std::to_string(a.shape(0)));
    return static_cast<const T*>(a.data());
}

}  // namespace

void register_simd(pyb::module_& m) {
    m.def(
        "active_isa", [] { return std::string(simd::isa_name(table_for("").isa)); },
        "The ISA whose kernels this process uses (RECSERVE_ISA overrides the best available).");
    m.def("active_variant", [] { return std::string(table_for("").variant); },
          "The kernel variant in use, e.g. 'avx512+vnni'.");
    m.def(
        "available_isas",
        [] {
            std::vector<std::string> names;
            for (simd::Isa isa : simd::available_isas()) names.emplace_back(simd::isa_name(isa));
            return names;
        },
        "ISAs this build has kernels for and this CPU can run, scalar first.");
    m.def(
        "kernel",
        [](const std::string& op, const pyb::array& a, const pyb::array& b, const std::string& isa) -> pyb::object {
            const simd::KernelTable& k = table_for(isa);
            const auto dims = static_cast<std::size_t>(a.ndim() == 1 ? a.shape(0) : 0);
            if (op == "dot_f32" || op == "l2sq_f32" || op == "cos_f32") {
                const float* pa = vector_data<float>(a, "a", dims);
                const float* pb = vector_data<float>(b, "b", dims);
                const auto fn = op == "dot_f32" ? k.dot_f32 : op == "l2sq_f32" ? k.l2sq_f32 : k.cos_f32;
                return pyb::float_(fn(pa, pb, dims));
            }
            if (op == "dot_i8" || op == "l2sq_i8") {
                const auto* pa = vector_data<std::int8_t>(a, "a", dims);
                const auto* pb = vector_data<std::int8_t>(b, "b", dims);
                return pyb::int_((op == "dot_i8" ? k.dot_i8 : k.l2sq_i8)(pa, pb, dims));
            }
            if (op == "cos_i8")
                return pyb::float_(k.cos_i8(vector_data<std::int8_t>(a, "a", dims), vector_data<std::int8_t>(b, "b", dims), dims));
            if (op == "dot_u8i8")
                return pyb::int_(k.dot_u8i8(vector_data<std::uint8_t>(a, "a", dims), vector_data<std::int8_t>(b, "b", dims), dims));
            throw pyb::value_error("unknown kernel '" + op +
                                   "'; expected dot_f32, l2sq_f32, cos_f32, dot_i8, l2sq_i8, cos_i8 or dot_u8i8");
        },
        pyb::arg("op"), pyb::arg("a"), pyb::arg("b"), pyb::arg("isa") = "",
        "Runs one kernel of one ISA ('' = the active one) on two vectors.");
    m.def(
        "int8_peak",
        [](std::size_t iterations, const std::string& isa) {
            const simd::KernelTable& k = table_for(isa);
            pyb::gil_scoped_release release;
            return k.int8_peak(iterations);
        },
        pyb::arg("iterations"), pyb::arg("isa") = "",
        "Runs the ISA's register-only int8 multiply-accumulate loop; returns the MACs done.");
}

}  // namespace recserve::py
