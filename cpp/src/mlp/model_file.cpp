#include "recserve/mlp/model_file.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

#include "recserve/base/byte_io.hpp"
#include "recserve/base/crc32c.hpp"

namespace recserve::mlp {
namespace {

struct ModelFileHeader {
    char magic[8];
    std::uint32_t version;
    std::uint32_t weight_type;
    std::uint32_t layers;
    std::uint32_t inputs;
    std::uint32_t heads;
    std::uint32_t reserved0;
    std::uint64_t body_bytes;
    std::uint32_t body_crc;
    std::uint8_t reserved1[16];
    std::uint32_t header_crc;
};
static_assert(sizeof(ModelFileHeader) == 64, "the header is 64 bytes on disk");
static_assert(offsetof(ModelFileHeader, body_bytes) == 32 && offsetof(ModelFileHeader, header_crc) == 60,
              "header field offsets are part of the file format");

// Generous bounds that reject absurd sizes before anything is allocated.
constexpr std::uint32_t kMaxLayers = 64;
constexpr std::uint32_t kMaxWidth = 1u << 16;
constexpr std::uint32_t kMaxHeads = 1024;

template <class T>
void put_array(ByteWriter& w, const std::vector<T>& v) {
    w.bytes(v.data(), v.size() * sizeof(T));
}

template <class T>
bool get_array(ByteReader& r, std::vector<T>& v, std::size_t n) {
    v.resize(n);
    return r.bytes(v.data(), n * sizeof(T));
}

std::vector<char> serialize_body(const Model& m) {
    ByteWriter w;
    w.put(std::uint64_t{m.metadata.size()});
    w.bytes(m.metadata.data(), m.metadata.size());
    for (std::size_t h = 0; h < m.heads.size(); ++h) {
        w.put(static_cast<std::uint8_t>(m.activations[h]));
        w.put(static_cast<std::uint16_t>(m.heads[h].size()));
        w.bytes(m.heads[h].data(), m.heads[h].size());
    }
    w.put(static_cast<std::uint32_t>(m.input_scale.size()));
    put_array(w, m.input_scale);
    for (const Layer& l : m.layers) {
        w.put(l.out);
        w.put(l.in);
        put_array(w, l.bias);
        if (m.weight_type == WeightType::kFloat32) {
            put_array(w, l.weight);
        } else {
            put_array(w, l.scale);
            put_array(w, l.qweight);
        }
    }
    return std::move(w.buffer());
}

Status parse_body(const ModelFileHeader& h, const char* body, std::size_t body_size, Model* m, const std::string& where) {
    const Status truncated = Status::corrupt(where + " ends inside its body");
    ByteReader r(body, body_size);
    std::uint64_t meta_bytes = 0;
    if (!r.get(meta_bytes) || meta_bytes > body_size) return truncated;
    m->metadata.resize(meta_bytes);
    if (!r.bytes(m->metadata.data(), meta_bytes)) return truncated;
    for (std::uint32_t i = 0; i < h.heads; ++i) {
        std::uint8_t activation = 0;
        std::uint16_t name_bytes = 0;
        if (!r.get(activation) || !r.get(name_bytes)) return truncated;
        if (activation > static_cast<std::uint8_t>(Activation::kIdentity))
            return Status::corrupt(where + " has an unknown activation for head " + std::to_string(i));
        std::string name(name_bytes, '\0');
        if (!r.bytes(name.data(), name_bytes)) return truncated;
        m->heads.push_back(std::move(name));
        m->activations.push_back(static_cast<Activation>(activation));
    }
    std::uint32_t scale_count = 0;
    if (!r.get(scale_count)) return truncated;
    if (scale_count != 0 && scale_count != h.inputs) return Status::corrupt(where + " has a bad input_scale count");
    if (!get_array(r, m->input_scale, scale_count)) return truncated;
    for (std::uint32_t i = 0; i < h.layers; ++i) {
        Layer& l = m->layers.emplace_back();
        if (!r.get(l.out) || !r.get(l.in)) return truncated;
        if (l.out == 0 || l.in == 0 || l.out > kMaxWidth || l.in > kMaxWidth)
            return Status::corrupt(where + " has an impossible shape for layer " + std::to_string(i));
        const std::size_t cells = std::size_t{l.out} * l.in;
        if (cells > body_size) return truncated;  // before allocating: the body cannot hold it
        if (!get_array(r, l.bias, l.out)) return truncated;
        if (m->weight_type == WeightType::kFloat32) {
            if (!get_array(r, l.weight, cells)) return truncated;
        } else if (!get_array(r, l.scale, l.out) || !get_array(r, l.qweight, cells)) {
            return truncated;
        }
    }
    if (!r.at_end()) return Status::corrupt(where + " has bytes after its last layer");
    return Status::ok();
}

}  // namespace

Status save_model(const std::string& path, const Model& model) {
    RECSERVE_RETURN_IF_ERROR(validate(model));
    if (model.layers.size() > kMaxLayers || model.heads.size() > kMaxHeads)
        return Status::invalid_argument("a model file holds at most 64 layers and 1024 heads");
    for (const std::string& name : model.heads) {
        if (name.size() > std::numeric_limits<std::uint16_t>::max())
            return Status::invalid_argument("head name '" + name.substr(0, 32) + "...' is too long");
    }
    for (const Layer& l : model.layers) {
        if (l.out > kMaxWidth || l.in > kMaxWidth) return Status::invalid_argument("a layer is wider than 65536");
    }
    const std::vector<char> body = serialize_body(model);
    ModelFileHeader h{};
    std::memcpy(h.magic, kModelMagic, sizeof(kModelMagic));
    h.version = kModelFormatVersion;
    h.weight_type = static_cast<std::uint32_t>(model.weight_type);
    h.layers = static_cast<std::uint32_t>(model.layers.size());
    h.inputs = model.input_dim();
    h.heads = static_cast<std::uint32_t>(model.heads.size());
    h.body_bytes = body.size();
    h.body_crc = crc32c(body.data(), body.size());
    h.header_crc = crc32c(&h, offsetof(ModelFileHeader, header_crc));
    const std::span<const char> parts[] = {{reinterpret_cast<const char*>(&h), sizeof(h)}, {body.data(), body.size()}};
    return write_file_atomically(path, parts);
}

Result<Model> load_model(const std::string& path) {
    Result<std::vector<char>> bytes = read_whole_file(path);
    if (!bytes.is_ok()) return bytes.status();
    const std::vector<char>& file = bytes.value();
    const std::string where = "model file '" + path + "'";
    ModelFileHeader h{};
    if (file.size() < sizeof(h))
        return Status::corrupt(where + " is truncated: " + std::to_string(file.size()) + " bytes, less than its header");
    std::memcpy(&h, file.data(), sizeof(h));
    if (std::memcmp(h.magic, kModelMagic, sizeof(kModelMagic)) != 0)
        return Status::corrupt(where + " is not a recserve model (bad magic)");
    if (crc32c(&h, offsetof(ModelFileHeader, header_crc)) != h.header_crc)
        return Status::corrupt(where + " has a corrupt header (checksum mismatch)");
    if (h.version != kModelFormatVersion)
        return Status::corrupt(where + " has format version " + std::to_string(h.version) + "; this build reads version " +
                               std::to_string(kModelFormatVersion));
    if (h.body_bytes != file.size() - sizeof(h))
        return Status::corrupt(where + " is truncated or padded: body is " + std::to_string(file.size() - sizeof(h)) +
                               " bytes, header says " + std::to_string(h.body_bytes));
    const char* body = file.data() + sizeof(h);
    const std::size_t body_size = file.size() - sizeof(h);
    if (crc32c(body, body_size) != h.body_crc) return Status::corrupt(where + " is corrupt (body checksum mismatch)");
    if (h.weight_type > 1 || h.layers == 0 || h.layers > kMaxLayers || h.heads == 0 || h.heads > kMaxHeads ||
        h.inputs == 0 || h.inputs > kMaxWidth)
        return Status::corrupt(where + " has impossible header fields");

    Model m;
    m.weight_type = static_cast<WeightType>(h.weight_type);
    RECSERVE_RETURN_IF_ERROR(parse_body(h, body, body_size, &m, where));
    if (m.input_dim() != h.inputs) return Status::corrupt(where + " has a first layer that disagrees with its header");
    Status valid = validate(m);
    if (!valid.is_ok()) return Status::corrupt(where + " is inconsistent: " + valid.message());
    return m;
}

}  // namespace recserve::mlp
