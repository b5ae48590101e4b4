// Linked into the prebuilt addon only (GRPO_STATIC_RUNTIME=ON, CMakeLists.txt): keeps the glibc it
// needs at 2.34 (Ubuntu 22.04, RHEL 9, Debian 12) although it is built on glibc 2.36.
//
// libstdc++.a from GCC 12, linked statically, carries std::random_device, which calls arc4random: a
// glibc 2.36 symbol. The addon never constructs a random_device, but the archive member comes in with
// std::string's, so the reference stays, and a dynamic loader on glibc 2.35 or older refuses the whole
// file. This hidden definition satisfies the reference inside the addon (the linker takes a definition
// from an object file before a shared library's), reading the kernel's entropy pool through getrandom
// (glibc 2.25), as glibc's own arc4random does. Nothing else uses it; it is not exported.
#include <sys/random.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>

extern "C" __attribute__((visibility("hidden"))) uint32_t arc4random(void) {
  uint32_t v = 0;
  for (;;) {
    ssize_t n = getrandom(&v, sizeof v, 0);
    if (n == static_cast<ssize_t>(sizeof v)) return v;
    if (n < 0 && errno != EINTR) std::abort();  // as glibc: arc4random cannot fail
  }
}
