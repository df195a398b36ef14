#pragma once
// One error type for the data and control planes (no exceptions there).
#include <string>

#include <tl/expected.hpp>

namespace tandem {

enum class ErrorSource { kDownstream, kUpstream, kInternal, kConfig };

struct Error {
  int code = 0;  // errno, HTTP status, or a component-specific code
  ErrorSource source = ErrorSource::kInternal;
  bool retryable = false;
  std::string message;
};

template <typename T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> fail(ErrorSource src, int code, std::string msg, bool retryable = false) {
  return tl::unexpected<Error>(Error{code, src, retryable, std::move(msg)});
}

}  // namespace tandem
