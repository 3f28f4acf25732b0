# End-to-end tests of `dsinfer serve` with the official openai npm client (node --test), label server.
# scripts/setup.sh installs the pinned client (tests/server/package-lock.json) with npm ci.
find_program(DSINFER_NODE node)
set(_server_dir ${CMAKE_CURRENT_SOURCE_DIR}/server)
foreach(_t chat auth_shutdown tiny_model)
  if(DSINFER_NODE AND EXISTS ${_server_dir}/node_modules/openai)
    add_test(NAME server_node_${_t} COMMAND ${DSINFER_NODE} --test --test-timeout=120000 ${_server_dir}/${_t}.test.mjs
             WORKING_DIRECTORY ${_server_dir})
  else()
    # Not skipped silently: the test fails and says what to do.
    add_test(NAME server_node_${_t} COMMAND ${CMAKE_COMMAND} -E echo
             "node or tests/server/node_modules/openai missing: run scripts/setup.sh, then re-run cmake")
    set_tests_properties(server_node_${_t} PROPERTIES WILL_FAIL TRUE)
  endif()
  set_tests_properties(server_node_${_t} PROPERTIES LABELS server TIMEOUT 300
                       ENVIRONMENT "DSINFER_BINARY=$<TARGET_FILE:dsinfer>")
endforeach()
