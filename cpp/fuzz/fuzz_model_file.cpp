// Fuzzes the ranker's model file (mlp/model_file.hpp): load_model on each input as it is,
// then, if its checksums were wrong, with both CRC-32C fields recomputed so mutations reach
// the body parser. A model that loads must then be usable: it saves to the same body, and an
// int8 model packs for the active kernels and scores a row.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz_common.hpp"
#include "recserve/mlp/model_file.hpp"
#include "recserve/mlp/quantized_mlp.hpp"

namespace {

using recserve::mlp::Model;

constexpr std::size_t kBodyCrcAt = 40;  // model_file.hpp's header layout

void exercise(const Model& model, const std::vector<char>& bytes) {
    // The body is canonical: saving what was loaded writes the same bytes after the header.
    static const recserve::fuzz::TempFile saved("model-resaved");
    FUZZ_CHECK(recserve::mlp::save_model(saved.path(), model).is_ok());
    const std::vector<char> again = saved.read();
    FUZZ_CHECK(again.size() == bytes.size());
    FUZZ_CHECK(std::equal(again.begin() + recserve::fuzz::kHeaderBytes, again.end(),
                          bytes.begin() + recserve::fuzz::kHeaderBytes));
    if (model.weight_type != recserve::mlp::WeightType::kInt8) return;
    auto mlp = recserve::mlp::QuantizedMlp::create(model);
    FUZZ_CHECK(mlp.is_ok());
    std::vector<float> x(mlp.value().input_dim(), 0.5f);
    std::vector<float> out(mlp.value().output_dim());
    FUZZ_CHECK(mlp.value().predict(x.data(), 1, out.data()).is_ok());
}

void load(const std::string& path, const std::vector<char>& bytes) {
    auto model = recserve::mlp::load_model(path);
    if (model.is_ok()) exercise(model.value(), bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const recserve::fuzz::TempFile file("model");
    return recserve::fuzz::fuzz_file(file, data, size, kBodyCrcAt, load);
}
