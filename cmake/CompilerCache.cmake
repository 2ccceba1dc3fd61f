# Rebuilds that compile the same code again (pip builds every `pip install .` from scratch, in a
# fresh isolated environment: the README's install, its test install and the wheel in CI) reuse
# the objects of the first build through ccache when it is installed. Two things make the
# compile commands of those builds identical, which ccache needs to recognise them:
#   - the pybind11 and Eigen headers are copied from the (randomly named) isolated environment
#     into the build tree, and the targets include the copies;
#   - the build tree itself is fixed (pyproject.toml: build-dir = "build/{wheel_tag}").
# Objects come from the cache only for identical sources, flags and headers; without ccache
# (or with -DFASTLRP_CCACHE=OFF) nothing changes.
option(FASTLRP_CCACHE "Use ccache when it is installed" ON)
if(NOT FASTLRP_CCACHE)
  return()
endif()
find_program(FASTLRP_CCACHE_PROGRAM ccache)
if(NOT FASTLRP_CCACHE_PROGRAM)
  return()
endif()
set(CMAKE_CXX_COMPILER_LAUNCHER "${FASTLRP_CCACHE_PROGRAM}")
message(STATUS "fastlrp: compiling through ${FASTLRP_CCACHE_PROGRAM}")

function(fastlrp_mirror_includes target subdir)
  get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  if(NOT dirs)
    return()
  endif()
  set(mirrored "")
  set(k 0)
  foreach(dir IN LISTS dirs)
    if(dir MATCHES "^\\$<" OR NOT IS_DIRECTORY "${dir}")
      list(APPEND mirrored "${dir}")  # generator expressions and missing folders stay as they are
      continue()
    endif()
    set(dest "${CMAKE_BINARY_DIR}/_headers/${subdir}${k}")
    file(REMOVE_RECURSE "${dest}")
    file(COPY "${dir}/" DESTINATION "${dest}")
    list(APPEND mirrored "${dest}")
    math(EXPR k "${k} + 1")
  endforeach()
  set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${mirrored}")
endfunction()

foreach(t pybind11::pybind11_headers pybind11::headers)
  if(TARGET ${t})
    get_target_property(aliased ${t} ALIASED_TARGET)
    if(NOT aliased)
      fastlrp_mirror_includes(${t} pybind11)
    endif()
  endif()
endforeach()
if(TARGET Eigen3::Eigen)
  get_target_property(aliased Eigen3::Eigen ALIASED_TARGET)
  if(aliased)
    fastlrp_mirror_includes(${aliased} eigen)
  else()
    fastlrp_mirror_includes(Eigen3::Eigen eigen)
  endif()
endif()
