// The core objects behind other modules' Python classes, for bindings that take several at once
// (the feed pipeline reads the index and the profiles). The caller keeps the Python objects
// alive for as long as it uses the references.
#pragma once

#include <pybind11/pybind11.h>

#include "recserve/ann/index.hpp"
#include "recserve/profiles/profiles.hpp"

namespace recserve::py {

const ann::Index& index_of(const pybind11::handle& index);                  // a _core.ann.Index
const profiles::Profiles& profiles_of(const pybind11::handle& profiles);  // a _core.profiles.Profiles

}  // namespace recserve::py
