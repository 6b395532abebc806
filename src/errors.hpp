// Turning core Status values into Python exceptions, and checking arrays at the boundary.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <initializer_list>
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

// The data of a C-contiguous array of T with this shape (-1: any length on that axis), else
// TypeError or ValueError naming `what`.
template <class T>
const T* array_data(const pyb::array& a, const char* what, std::initializer_list<pyb::ssize_t> shape) {
    if (!a.dtype().is(pyb::dtype::of<T>()))
        throw pyb::type_error(std::string(what) + " must be a " + std::string(pyb::str(pyb::dtype::of<T>())) +
                              " array, got dtype " + std::string(pyb::str(a.dtype())));
    bool ok = a.ndim() == static_cast<pyb::ssize_t>(shape.size());
    std::string wanted = "(";
    pyb::ssize_t axis = 0;
    for (pyb::ssize_t dim : shape) {
        ok = ok && (dim < 0 || a.shape(axis) == dim);
        wanted += (axis > 0 ? ", " : "") + (dim < 0 ? std::string("n") : std::to_string(dim));
        ++axis;
    }
    wanted += shape.size() == 1 ? ",)" : ")";
    if (!ok) throw pyb::value_error(std::string(what) + " must have shape " + wanted + ", got " + shape_of(a));
    if (!(a.flags() & pyb::array::c_style)) throw pyb::value_error(std::string(what) + " must be C-contiguous");
    return static_cast<const T*>(a.data());
}

// ids: a uint64 vector; vectors: C-contiguous float32 of shape (len(ids), dims).
void require_id_rows(const pyb::array& ids, const pyb::array& vectors, std::size_t dims);

}  // namespace recserve::py
