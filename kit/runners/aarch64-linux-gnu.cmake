# Cross-compiling for linux-aarch64 with Debian's gcc/g++-aarch64-linux-gnu: the runner (C++) and,
# for the source recipe, ExecuTorch itself (C, C++ and assembly).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# The executorch package lives outside the sysroot (unpacked aarch64 wheel, or a source install).
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
