# Stand-in for CMake/SlicerExtensionCPack.cmake: the package is what `cmake --install` puts in the prefix.
