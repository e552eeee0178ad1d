# Runs one libFuzzer harness for the tests and makes a failure carry its reproducer: a CI log keeps only
# its tail, so the fuzzer's output goes to a file and, on failure, this prints the report's last lines,
# then every input the fuzzer saved (crash-*, leak-*, timeout-*, oom-*) in hex with the command that
# replays it.
#   cmake -DFUZZER=<harness> -DCORPUS=<dir> -DARTIFACTS=<dir> -DSECONDS=<n> -P run_fuzz.cmake
foreach(v FUZZER CORPUS ARTIFACTS SECONDS)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_fuzz.cmake: -D${v}=... is missing")
  endif()
endforeach()
file(REMOVE_RECURSE ${ARTIFACTS})
file(MAKE_DIRECTORY ${ARTIFACTS})
set(log ${ARTIFACTS}/fuzz.log)
execute_process(COMMAND ${FUZZER} -max_total_time=${SECONDS} -rss_limit_mb=1024 -timeout=5
                        -artifact_prefix=${ARTIFACTS}/ ${CORPUS}
                RESULT_VARIABLE rc OUTPUT_FILE ${log} ERROR_FILE ${log})
file(STRINGS ${log} lines)
list(LENGTH lines n)
if(rc EQUAL 0)
  if(n GREATER 0)
    list(GET lines -1 last)
    message(STATUS "${last}")
  endif()
  return()
endif()
# The report: its last 60 lines (the sanitizer's message and the stack are there).
set(first 0)
if(n GREATER 60)
  math(EXPR first "${n} - 60")
endif()
list(SUBLIST lines ${first} -1 tail)
string(REPLACE ";" "\n" tail "${tail}")
message("${tail}\n")
file(GLOB saved ${ARTIFACTS}/crash-* ${ARTIFACTS}/leak-* ${ARTIFACTS}/timeout-* ${ARTIFACTS}/oom-*)
foreach(f ${saved})
  file(SIZE ${f} size)
  file(READ ${f} hex HEX LIMIT 4096)
  string(REGEX REPLACE "(................................................................)" "\\1\n" hex
                       "${hex}")
  get_filename_component(name ${f} NAME)
  message("${name} (${size} bytes; the first 4096 in hex):\n${hex}\n"
          "replay: save the hex as input.hex, then\n"
          "  python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read()))' "
          "< input.hex > input && ${FUZZER} input\n")
endforeach()
if(NOT saved)
  message("the fuzzer saved no input (log: ${log})")
endif()
message(FATAL_ERROR "${FUZZER} failed (exit ${rc}); its log: ${log}")
