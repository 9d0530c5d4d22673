# Install rules and the CMake package (find_package(rmsprop CONFIG)). Included by the top-level
# CMakeLists.txt; must not define build targets.
#
# Two layouts with the same relative structure: a standalone `cmake --install` puts headers,
# libraries and the package under the usual GNU directories of the prefix; the wheel puts them
# under the rmsprop/ package directory, where `python -m rmsprop --cmakedir` finds them.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

if(DEFINED SKBUILD)
  set(RMSPROP_INSTALL_INCLUDEDIR rmsprop/include)
  set(RMSPROP_INSTALL_LIBDIR rmsprop/lib)
  set(RMSPROP_INSTALL_DOCDIR rmsprop/share/doc)
else()
  set(RMSPROP_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR})
  set(RMSPROP_INSTALL_LIBDIR ${CMAKE_INSTALL_LIBDIR})
  set(RMSPROP_INSTALL_DOCDIR ${CMAKE_INSTALL_DATADIR}/doc/rmsprop)
  # A versioned soname for system installs. A wheel cannot hold the symlinks, so it ships one
  # unversioned file; the Python package version pins it instead.
  set_target_properties(rmsprop PROPERTIES VERSION ${PROJECT_VERSION}
                        SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
endif()
set(RMSPROP_INSTALL_CMAKEDIR ${RMSPROP_INSTALL_LIBDIR}/cmake/rmsprop)

install(TARGETS rmsprop EXPORT rmsprop-targets
  LIBRARY DESTINATION ${RMSPROP_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${RMSPROP_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${RMSPROP_INSTALL_INCLUDEDIR})
install(TARGETS rmsprop_core EXPORT rmsprop-core-targets
  ARCHIVE DESTINATION ${RMSPROP_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${RMSPROP_INSTALL_INCLUDEDIR})
install(FILES cpp/include/rmsprop/rmsprop.h cpp/include/rmsprop/rmsprop.hpp
  DESTINATION ${RMSPROP_INSTALL_INCLUDEDIR}/rmsprop)
install(FILES LICENSE DESTINATION ${RMSPROP_INSTALL_DOCDIR})

install(EXPORT rmsprop-targets NAMESPACE rmsprop:: DESTINATION ${RMSPROP_INSTALL_CMAKEDIR})
install(EXPORT rmsprop-core-targets NAMESPACE rmsprop:: DESTINATION ${RMSPROP_INSTALL_CMAKEDIR})
configure_package_config_file(cmake/rmsprop-config.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/rmsprop-config.cmake
  INSTALL_DESTINATION ${RMSPROP_INSTALL_CMAKEDIR})
# Same major and minor: the C API may grow between minor versions before 1.0.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/rmsprop-config-version.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/rmsprop-config.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/rmsprop-config-version.cmake
  DESTINATION ${RMSPROP_INSTALL_CMAKEDIR})
