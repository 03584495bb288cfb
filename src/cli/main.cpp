#include <cstdio>
#include <string>

#include "src/core/error.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--version") {
    std::puts(ng::version_string().c_str());
    return 0;
  }
  std::fputs("usage: noisegeom <command> (under construction)\n", stderr);
  return 2;
}
