// The execution spaces every templated test case runs on: all that this Kokkos build enables (Serial,
// OpenMP, Threads, CUDA, HIP), read from Kokkos' own configuration macros. Tests allocate their views in
// `TestType::memory_space` with the layout the backend gives by default (LayoutLeft on CUDA and HIP),
// and copy results to the host to check them.
#pragma once

#include <Kokkos_Core.hpp>

#include <tuple>

namespace scorekit_test {
// Unevaluated: nothing is constructed, so Kokkos need not be initialised yet.
using Backends = decltype(std::tuple_cat(
#ifdef KOKKOS_ENABLE_SERIAL
    std::tuple<Kokkos::Serial>{},
#else
    std::tuple<>{},
#endif
#ifdef KOKKOS_ENABLE_OPENMP
    std::tuple<Kokkos::OpenMP>{},
#else
    std::tuple<>{},
#endif
#ifdef KOKKOS_ENABLE_THREADS
    std::tuple<Kokkos::Threads>{},
#else
    std::tuple<>{},
#endif
#ifdef KOKKOS_ENABLE_CUDA
    std::tuple<Kokkos::Cuda>{},
#else
    std::tuple<>{},
#endif
#ifdef KOKKOS_ENABLE_HIP
    std::tuple<Kokkos::HIP> {}
#else
    std::tuple<>{}
#endif
    ));
static_assert(std::tuple_size<Backends>::value > 0, "tests need at least one Kokkos backend enabled");

/// True when the execution space's memory is the host's (results can be read without a copy).
template <class Exec>
constexpr bool host_backend_v =
    Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename Exec::memory_space>::accessible;

}  // namespace scorekit_test
