# End-to-end tests of `dsinfer serve` with the official openai npm client (node --test), label server.
# scripts/setup.sh installs the pinned client (tests/server/package-lock.json) with npm ci.
find_program(DSINFER_NODE node)
set(_server_dir ${CMAKE_CURRENT_SOURCE_DIR}/server)
# name, node's per-file timeout (ms), ctest timeout (s): the tiny real model is slow on a loaded CPU.
foreach(_spec "chat;180000;240" "auth_shutdown;180000;240" "tiny_model;840000;900" "default_model;600000;660"
              "speculative;300000;360")
  list(GET _spec 0 _t)
  list(GET _spec 1 _node_ms)
  list(GET _spec 2 _ctest_s)
  if(DSINFER_NODE AND EXISTS ${_server_dir}/node_modules/openai)
    add_test(NAME server_node_${_t} COMMAND ${DSINFER_NODE} --test --test-timeout=${_node_ms} ${_server_dir}/${_t}.test.mjs
             WORKING_DIRECTORY ${_server_dir})
  else()
    # Not skipped silently: the test fails and says what to do.
    add_test(NAME server_node_${_t} COMMAND ${CMAKE_COMMAND} -E echo
             "node or tests/server/node_modules/openai missing: run scripts/setup.sh, then re-run cmake")
    set_tests_properties(server_node_${_t} PROPERTIES WILL_FAIL TRUE)
  endif()
  set_tests_properties(server_node_${_t} PROPERTIES LABELS server TIMEOUT ${_ctest_s}
                       ENVIRONMENT "DSINFER_BINARY=$<TARGET_FILE:dsinfer>")
endforeach()
