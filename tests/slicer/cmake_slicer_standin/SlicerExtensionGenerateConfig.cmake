# Stand-in for CMake/SlicerExtensionGenerateConfig.cmake and the description check of
# Extensions/CMake/SlicerFunctionGenerateExtensionDescription.cmake: the required metadata must be set;
# the description is written as <name>.s4ext-like "key value" lines.
foreach(_var EXTENSION_HOMEPAGE EXTENSION_CATEGORY EXTENSION_CONTRIBUTORS EXTENSION_DESCRIPTION EXTENSION_ICONURL
             EXTENSION_SCREENSHOTURLS EXTENSION_DEPENDS)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "Extension metadata ${_var} is not set")
  endif()
endforeach()
file(WRITE "${CMAKE_BINARY_DIR}/${PROJECT_NAME}.s4ext"
  "homepage ${EXTENSION_HOMEPAGE}\ncategory ${EXTENSION_CATEGORY}\niconurl ${EXTENSION_ICONURL}\n"
  "screenshoturls ${EXTENSION_SCREENSHOTURLS}\ndepends ${EXTENSION_DEPENDS}\ndescription ${EXTENSION_DESCRIPTION}\n")
