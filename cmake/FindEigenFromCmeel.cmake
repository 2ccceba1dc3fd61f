# Eigen comes from a system install or from the cmeel-eigen build requirement,
# whose prefix `python -m cmeel cmake` prints.
find_package(Eigen3 3.3 CONFIG QUIET)
if(NOT Eigen3_FOUND)
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -m cmeel cmake
    OUTPUT_VARIABLE FASTLRP_CMEEL_PREFIX
    OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE FASTLRP_CMEEL_RESULT)
  if(FASTLRP_CMEEL_RESULT EQUAL 0)
    list(APPEND CMAKE_PREFIX_PATH "${FASTLRP_CMEEL_PREFIX}")
  endif()
  find_package(Eigen3 3.3 CONFIG REQUIRED)
endif()
message(STATUS "fastlrp: Eigen ${Eigen3_VERSION} from ${Eigen3_DIR}")
