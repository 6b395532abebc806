// Turning core Status values into Python exceptions, and checking arrays at the boundary.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "recserve/base/status.hpp"

namespace recserve::py {

namespace pyb = pybind11;

// Raised for files that fail their checksum or structural checks (a ValueError subclass).
pyb::object& corrupt_file_error();

// Raises the Python exception that matches the status; returns if it is ok.
void raise_if_error(const Status& st);

std::string shape_of(const pyb::array& a);

// A C-contiguous float32 array of exactly `ndim` dims, else TypeError/ValueError naming `what`.
void require_float32(const pyb::array& a, const char* what, int ndim);

// A C-contiguous uint64 vector, else TypeError/ValueError naming `what`.
void require_uint64_vector(const pyb::array& a, const char* what);

// ids: a uint64 vector; vectors: C-contiguous float32 of shape (len(ids), dims).
void require_id_rows(const pyb::array& ids, const pyb::array& vectors, std::size_t dims);

}  // namespace recserve::py
