# Strict warnings for our own targets only (never for third-party code).
function(recserve_strict_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
endfunction()
