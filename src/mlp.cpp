// recserve._core.mlp: the int8 ranker, its quantizer and its model file. Inputs are checked
// here, then the GIL is released for the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "errors.hpp"
#include "recserve/mlp/model_file.hpp"
#include "recserve/mlp/quantized_mlp.hpp"
#include "recserve/simd/kernel_table.hpp"

namespace recserve::py {
namespace {

using mlp::Activation;
using mlp::Model;
using mlp::QuantizedMlp;
using mlp::WeightType;

template <class T>
std::vector<T> to_vector(const pyb::array& a, const std::string& what, std::size_t expected) {
    if (!a.dtype().is(pyb::dtype::of<T>()))
        throw pyb::type_error(what + " must be a " + std::string(pyb::str(pyb::dtype::of<T>())) + " array, got dtype " +
                              std::string(pyb::str(a.dtype())));
    if (!(a.flags() & pyb::array::c_style)) throw pyb::value_error(what + " must be C-contiguous");
    if (static_cast<std::size_t>(a.size()) != expected)
        throw pyb::value_error(what + " has shape " + shape_of(a) + ", expected " + std::to_string(expected) + " values");
    const T* p = static_cast<const T*>(a.data());
    return std::vector<T>(p, p + expected);
}

template <class T>
pyb::array_t<T> to_array(const std::vector<T>& v, std::vector<pyb::ssize_t> shape) {
    pyb::array_t<T> a(shape);
    std::copy(v.begin(), v.end(), a.mutable_data());
    return a;
}

std::vector<Activation> parse_activations(const std::vector<std::string>& names) {
    std::vector<Activation> out;
    for (const std::string& n : names) {
        if (n == "sigmoid") out.push_back(Activation::kSigmoid);
        else if (n == "identity") out.push_back(Activation::kIdentity);
        else throw pyb::value_error("unknown head activation '" + n + "': use 'sigmoid' or 'identity'");
    }
    return out;
}

std::vector<std::string> activation_names(const std::vector<Activation>& acts) {
    std::vector<std::string> out;
    for (Activation a : acts) out.emplace_back(mlp::activation_name(a));
    return out;
}

// A model from Python lists; layers are (weight [out, in], bias [out]) for float32 and
// (qweight [out, in], scale [out], bias [out]) for int8.
Model make_model(WeightType type, const pyb::list& layers, const std::vector<std::string>& heads,
                 const std::vector<std::string>& activations, const std::optional<pyb::array>& input_scale,
                 const std::string& metadata) {
    Model m;
    m.weight_type = type;
    m.heads = heads;
    m.activations = parse_activations(activations);
    m.metadata = metadata;
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const auto t = layers[i].cast<pyb::tuple>();
        const std::string where = "layer " + std::to_string(i);
        const auto w = t[0].cast<pyb::array>();
        if (w.ndim() != 2) throw pyb::value_error(where + " weight must be 2-D [out, in], got shape " + shape_of(w));
        mlp::Layer& l = m.layers.emplace_back();
        l.out = static_cast<std::uint32_t>(w.shape(0));
        l.in = static_cast<std::uint32_t>(w.shape(1));
        const std::size_t cells = std::size_t{l.out} * l.in;
        if (type == WeightType::kFloat32) {
            if (t.size() != 2) throw pyb::value_error(where + " must be (weight, bias)");
            l.weight = to_vector<float>(w, where + " weight", cells);
            l.bias = to_vector<float>(t[1].cast<pyb::array>(), where + " bias", l.out);
        } else {
            if (t.size() != 3) throw pyb::value_error(where + " must be (qweight, scale, bias)");
            l.qweight = to_vector<std::int8_t>(w, where + " qweight", cells);
            l.scale = to_vector<float>(t[1].cast<pyb::array>(), where + " scale", l.out);
            l.bias = to_vector<float>(t[2].cast<pyb::array>(), where + " bias", l.out);
        }
    }
    if (input_scale) m.input_scale = to_vector<float>(*input_scale, "input_scale", m.input_dim());
    raise_if_error(mlp::validate(m));
    return m;
}

pyb::list layers_of(const Model& m) {
    pyb::list out;
    for (const mlp::Layer& l : m.layers) {
        const std::vector<pyb::ssize_t> shape = {l.out, l.in};
        if (m.weight_type == WeightType::kFloat32) {
            out.append(pyb::make_tuple(to_array(l.weight, shape), to_array(l.bias, {l.out})));
        } else {
            out.append(pyb::make_tuple(to_array(l.qweight, shape), to_array(l.scale, {l.out}), to_array(l.bias, {l.out})));
        }
    }
    return out;
}

const simd::KernelTable* kernels_named(const std::string& isa) {
    Result<const simd::KernelTable*> k = simd::active_kernels();
    if (!isa.empty()) {
        Result<simd::Isa> parsed = simd::parse_isa(isa);
        if (!parsed.is_ok()) throw pyb::value_error(parsed.status().message());
        k = simd::kernels_for(parsed.value());
    }
    if (!k.is_ok()) throw pyb::value_error(k.status().message());
    return k.value();
}

QuantizedMlp make_quantized(Model m, const std::string& isa) {
    Result<QuantizedMlp> q = QuantizedMlp::create(std::move(m), kernels_named(isa));
    raise_if_error(q.is_ok() ? Status::ok() : q.status());
    return std::move(q).value();
}

pyb::array_t<float> predict(const QuantizedMlp& q, const pyb::array& x, std::optional<pyb::array_t<float>> out) {
    require_float32(x, "x", 2);
    if (static_cast<std::size_t>(x.shape(1)) != q.input_dim())
        throw pyb::value_error("x must have " + std::to_string(q.input_dim()) + " features per row, got shape " + shape_of(x));
    const auto rows = static_cast<std::size_t>(x.shape(0));
    pyb::array_t<float> result;
    if (out) {
        result = *out;
        if (!(result.flags() & pyb::array::c_style) || result.ndim() != 2 ||
            static_cast<std::size_t>(result.shape(0)) != rows || static_cast<std::size_t>(result.shape(1)) != q.output_dim())
            throw pyb::value_error("out must be a C-contiguous float32 array of shape (" + std::to_string(rows) + ", " +
                                   std::to_string(q.output_dim()) + "), got " + shape_of(result));
    } else {
        result = pyb::array_t<float>({static_cast<pyb::ssize_t>(rows), static_cast<pyb::ssize_t>(q.output_dim())});
    }
    const auto* xp = static_cast<const float*>(x.data());
    float* op = result.mutable_data();
    Status st;
    {
        pyb::gil_scoped_release release;
        st = q.predict(xp, rows, op);
    }
    raise_if_error(st);
    return result;
}

}  // namespace

void register_mlp(pyb::module_& m) {
    pyb::class_<QuantizedMlp>(m, "QuantizedMlp", "An int8 ranker packed for one ISA's kernels.")
        .def(pyb::init([](const pyb::list& layers, const std::vector<std::string>& heads,
                          const std::vector<std::string>& activations, const std::optional<pyb::array>& input_scale,
                          const std::string& metadata, const std::string& isa) {
                 return make_quantized(make_model(WeightType::kInt8, layers, heads, activations, input_scale, metadata), isa);
             }),
             pyb::arg("layers"), pyb::arg("heads"), pyb::arg("activations"), pyb::arg("input_scale"),
             pyb::arg("metadata"), pyb::arg("isa"))
        .def("predict", &predict, pyb::arg("x"), pyb::arg("out") = std::nullopt)
        .def("save",
             [](const QuantizedMlp& q, const std::string& path) {
                 Status st;
                 {
                     pyb::gil_scoped_release release;
                     st = mlp::save_model(path, q.model());
                 }
                 raise_if_error(st);
             },
             pyb::arg("path"))
        .def_property_readonly("layers", [](const QuantizedMlp& q) { return layers_of(q.model()); })
        .def_property_readonly("heads", [](const QuantizedMlp& q) { return q.model().heads; })
        .def_property_readonly("activations", [](const QuantizedMlp& q) { return activation_names(q.model().activations); })
        .def_property_readonly("input_scale",
                               [](const QuantizedMlp& q) -> std::optional<pyb::array_t<float>> {
                                   if (q.model().input_scale.empty()) return std::nullopt;
                                   return to_array(q.model().input_scale, {static_cast<pyb::ssize_t>(q.input_dim())});
                               })
        .def_property_readonly("metadata", [](const QuantizedMlp& q) { return q.model().metadata; })
        .def_property_readonly("input_dim", &QuantizedMlp::input_dim)
        .def_property_readonly("kernel_variant", [](const QuantizedMlp& q) { return std::string(q.kernel_variant()); });

    m.def(
        "quantize",
        [](const pyb::list& layers, const std::vector<std::string>& heads, const std::vector<std::string>& activations,
           const std::optional<pyb::array>& input_scale, const std::string& metadata, const std::string& isa) {
            const Model f = make_model(WeightType::kFloat32, layers, heads, activations, std::nullopt, metadata);
            std::vector<float> scale;
            if (input_scale) scale = to_vector<float>(*input_scale, "input_scale", f.input_dim());
            Result<Model> q = mlp::quantize(f, scale);
            raise_if_error(q.is_ok() ? Status::ok() : q.status());
            return make_quantized(std::move(q).value(), isa);
        },
        pyb::arg("layers"), pyb::arg("heads"), pyb::arg("activations"), pyb::arg("input_scale"), pyb::arg("metadata"),
        pyb::arg("isa"), "Quantizes float32 (weight, bias) layers to an int8 ranker.");

    m.def(
        "save_float",
        [](const std::string& path, const pyb::list& layers, const std::vector<std::string>& heads,
           const std::vector<std::string>& activations, const std::string& metadata) {
            const Model f = make_model(WeightType::kFloat32, layers, heads, activations, std::nullopt, metadata);
            Status st;
            {
                pyb::gil_scoped_release release;
                st = mlp::save_model(path, f);
            }
            raise_if_error(st);
        },
        pyb::arg("path"), pyb::arg("layers"), pyb::arg("heads"), pyb::arg("activations"), pyb::arg("metadata"));

    m.def(
        "load",
        [](const std::string& path) {
            Result<Model> loaded = Status::io_error("not loaded");
            {
                pyb::gil_scoped_release release;
                loaded = mlp::load_model(path);
            }
            raise_if_error(loaded.is_ok() ? Status::ok() : loaded.status());
            const Model& model = loaded.value();
            pyb::dict d;
            d["weight_type"] = model.weight_type == WeightType::kFloat32 ? "float32" : "int8";
            d["layers"] = layers_of(model);
            d["heads"] = model.heads;
            d["activations"] = activation_names(model.activations);
            d["input_scale"] = model.input_scale.empty()
                                   ? pyb::object(pyb::none())
                                   : pyb::object(to_array(model.input_scale, {static_cast<pyb::ssize_t>(model.input_dim())}));
            d["metadata"] = model.metadata;
            return d;
        },
        pyb::arg("path"), "Reads and verifies a model file: a dict of its parts.");
}

}  // namespace recserve::py
