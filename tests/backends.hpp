// The execution spaces every templated test case runs on: all that this Kokkos build enables.
#pragma once

#include <Kokkos_Core.hpp>

#include <tuple>

namespace scorekit_test {
namespace detail {
template <class... A, class... B>
std::tuple<A..., B...> cat(std::tuple<A...>, std::tuple<B...>);
}

using Backends = decltype(detail::cat(
#ifdef KOKKOS_ENABLE_SERIAL
    std::tuple<Kokkos::Serial>{},
#else
    std::tuple<>{},
#endif
#ifdef KOKKOS_ENABLE_OPENMP
    std::tuple<Kokkos::OpenMP> {}
#else
    std::tuple<>{}
#endif
    ));
static_assert(std::tuple_size<Backends>::value > 0, "tests need Serial or OpenMP enabled in Kokkos");

}  // namespace scorekit_test
