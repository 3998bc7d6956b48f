# Stand-in for a Slicer build's SlicerConfig.cmake (CMake/SlicerConfig.cmake.in, Slicer 5.8/5.10), for
# tests/slicer/test_extension_build.py: the variables an extension's CMake uses, and the macros of
# CMake/SlicerMacroBuildScriptedModule.cmake and CMake/SlicerMacroPythonTesting.cmake reduced to what
# they do with files (copy to the build tree, install, register a test).
# Slicer_VERSION comes from SlicerConfigVersion.cmake through find_package, as for a real build.
string(REPLACE "." ";" _v "${STANDIN_SLICER_VERSION}")
list(GET _v 0 Slicer_VERSION_MAJOR)
list(GET _v 1 Slicer_VERSION_MINOR)
set(Slicer_REQUIRED_PYTHON_VERSION "${STANDIN_PYTHON_VERSION}")
set(Slicer_USE_PYTHONQT ON)
# CMake/SlicerDirectories.cmake: lib/Slicer-<major.minor>/qt-scripted-modules
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-${Slicer_VERSION_MAJOR}.${Slicer_VERSION_MINOR}/qt-scripted-modules")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}")
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionGenerateConfig.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionCPack.cmake")
