# Run by CMake right after llama.cpp's project() call (scripts/setup.sh and deploy/Dockerfile pass it as
# CMAKE_PROJECT_llama.cpp_INCLUDE). llama-cpp-python forces LLAMA_BUILD_COMMON on, but its Python package
# never loads libllama-common, nor cpp-httplib, which is built only for it: 171 of 333 CPU-seconds of the
# compile (measured on a 2-core Xeon, ninja's log), for nothing hearth uses.
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama: build common utils library" FORCE)
