# Stand-in for a Slicer build's SlicerConfigVersion.cmake (CMake/SlicerConfigVersion.cmake.in):
# the version is the test's STANDIN_SLICER_VERSION.
set(PACKAGE_VERSION "${STANDIN_SLICER_VERSION}")
if("${PACKAGE_VERSION}" VERSION_LESS "${PACKAGE_FIND_VERSION}")
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if("${PACKAGE_VERSION}" VERSION_EQUAL "${PACKAGE_FIND_VERSION}")
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
