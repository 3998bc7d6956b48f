# Stand-in for UseSlicer.cmake: the scripted-module and Python-test macros.
include(CTest)

# CMake/SlicerMacroBuildScriptedModule.cmake: checks every SCRIPT and RESOURCE exists, then
# ctkMacroCompilePythonScript copies them to ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}
# (keeping their relative paths) and installs that folder's content to
# ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}.
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(MY_SLICER_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Unknown keywords given to slicerMacroBuildScriptedModule(): \"${MY_SLICER_UNPARSED_ARGUMENTS}\"")
  endif()
  foreach(_f IN LISTS MY_SLICER_SCRIPTS MY_SLICER_RESOURCES)
    if(NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${_f}")
      message(FATAL_ERROR "slicerMacroBuildScriptedModule given nonexistent file or directory '${_f}'")
    endif()
    get_filename_component(_d "${_f}" DIRECTORY)
    configure_file("${CMAKE_CURRENT_SOURCE_DIR}/${_f}" "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/${_f}" COPYONLY)
    install(FILES "${CMAKE_CURRENT_SOURCE_DIR}/${_f}" DESTINATION "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${_d}" COMPONENT RuntimeLibraries)
  endforeach()
  file(APPEND "${CMAKE_BINARY_DIR}/standin-modules.txt" "${MY_SLICER_NAME}\n")
endmacro()

# CMake/SlicerMacroPythonTesting.cmake: registers "py_<script name>" run by Slicer --testing.
macro(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "SCRIPT;TESTNAME_PREFIX" "SLICER_ARGS" ${ARGN})
  get_filename_component(_name "${MY_SCRIPT}" NAME_WE)
  if(NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${MY_SCRIPT}")
    message(FATAL_ERROR "slicer_add_python_unittest: no ${MY_SCRIPT}")
  endif()
  file(APPEND "${CMAKE_BINARY_DIR}/standin-tests.txt" "py_${MY_TESTNAME_PREFIX}${_name}\n")
endmacro()
