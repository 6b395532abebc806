# RECSERVE_SANITIZE=thread|address|undefined instruments the core and the C++ tests.
if(RECSERVE_SANITIZE)
  set(_flags -fsanitize=${RECSERVE_SANITIZE} -fno-omit-frame-pointer -g)
  add_compile_options(${_flags})
  add_link_options(-fsanitize=${RECSERVE_SANITIZE})
endif()
