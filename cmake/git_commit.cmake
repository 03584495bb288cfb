# Run at every build (the ng_git_commit target): writes OUT, the definition of ng::git_commit(),
# only when the commit (or whether tracked files differ from it) changed, so that a binary and the
# run directories it writes name the commit it was built from, not the one of the last configure.
#   cmake -DSRC=<source dir> -DOUT=<file> -P cmake/git_commit.cmake
execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY ${SRC}
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT commit)
  set(commit "unknown")
else()
  execute_process(COMMAND git diff --quiet HEAD -- WORKING_DIRECTORY ${SRC}
                  RESULT_VARIABLE dirty ERROR_QUIET)
  if(NOT dirty EQUAL 0)
    string(APPEND commit "+dirty")
  endif()
endif()
set(text "// Written by cmake/git_commit.cmake at build time.\n#include \"src/core/error.h\"\n\nnamespace ng {\nconst char* git_commit() {\n  return \"${commit}\";\n}\n}  // namespace ng\n")
set(old "")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT old STREQUAL text)
  file(WRITE ${OUT} "${text}")
endif()
