// recserve._core.ingest: a batch of Kinesis records decoded into event columns. The list is
// walked with the GIL held only to find each record's bytes (references kept, so no other
// thread can free them); the parse runs without it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "errors.hpp"
#include "recserve/ingest/record_batch.hpp"

namespace recserve::py {
namespace {

using ingest::RecordSpan;

constexpr const char* kNotARecord = "not a record: expected bytes, or a dict with bytes \"Data\"";

// The bytes object of one element of `records` (a boto3 record dict or bytes), or null.
PyObject* bytes_of(PyObject* element, PyObject* data_key) {
    if (PyBytes_Check(element)) return element;
    if (!PyDict_Check(element)) return nullptr;
    PyObject* data = PyDict_GetItemWithError(element, data_key);  // borrowed
    if (data == nullptr && PyErr_Occurred()) throw pyb::error_already_set();
    return data != nullptr && PyBytes_Check(data) ? data : nullptr;
}

pyb::tuple decode_records(const pyb::list& records) {
    const auto n = static_cast<std::size_t>(records.size());
    const pyb::str data_key("Data");
    std::vector<pyb::object> keep;  // owns a reference to every bytes object read below
    keep.reserve(n);
    std::vector<RecordSpan> spans(n);
    std::vector<ingest::RecordError> not_records;
    for (std::size_t i = 0; i < n; ++i) {
        PyObject* bytes = bytes_of(PyList_GET_ITEM(records.ptr(), static_cast<pyb::ssize_t>(i)), data_key.ptr());
        if (bytes == nullptr) {
            not_records.push_back({i, kNotARecord});
            continue;
        }
        keep.push_back(pyb::reinterpret_borrow<pyb::object>(bytes));
        spans[i] = {PyBytes_AS_STRING(bytes), static_cast<std::size_t>(PyBytes_GET_SIZE(bytes))};
    }
    const auto rows = static_cast<pyb::ssize_t>(n);
    pyb::array_t<std::uint64_t> event_keys(rows), users(rows), items(rows);
    pyb::array_t<std::uint8_t> types(rows), status(rows);
    pyb::array_t<std::uint32_t> watch_ms(rows), duration_ms(rows);
    pyb::array_t<std::int64_t> ts_ms(rows);
    const ingest::EventColumns out{event_keys.mutable_data(), users.mutable_data(),    items.mutable_data(),
                                   types.mutable_data(),      watch_ms.mutable_data(), duration_ms.mutable_data(),
                                   ts_ms.mutable_data(),      status.mutable_data()};
    std::vector<ingest::RecordError> errors;
    {
        pyb::gil_scoped_release release;
        errors = ingest::decode_event_records(spans, out);
    }
    pyb::list error_list;
    auto a = errors.begin();
    auto b = not_records.begin();
    while (a != errors.end() || b != not_records.end()) {  // merged, in index order
        const bool take_a = b == not_records.end() || (a != errors.end() && a->index < b->index);
        const ingest::RecordError& e = take_a ? *a++ : *b++;
        error_list.append(pyb::make_tuple(e.index, pyb::str(e.message)));
    }
    pyb::dict columns;
    columns["event_keys"] = event_keys;
    columns["users"] = users;
    columns["items"] = items;
    columns["types"] = types;
    columns["watch_ms"] = watch_ms;
    columns["duration_ms"] = duration_ms;
    columns["ts_ms"] = ts_ms;
    return pyb::make_tuple(columns, status, error_list);
}

}  // namespace

void register_ingest(pyb::module_& m) {
    m.attr("BINARY_MAGIC") = ingest::kBinaryMagic;
    m.attr("BINARY_SIZE") = ingest::kBinarySize;
    m.def("decode_records", &decode_records, pyb::arg("records"),
          "Decode a list of Kinesis records (dicts with bytes 'Data', or bytes) into event columns: "
          "(columns, status (0 ok, 1 KPL aggregate, 2 bad), [(index, error) of the bad ones]).");
}

}  // namespace recserve::py
