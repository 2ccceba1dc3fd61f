// The ISA level this translation unit is compiled for, as the name of an inline namespace that
// every fastlrp symbol lives in. A portable build compiles the same sources three times, into
// the extension modules _core_v2, _core_v3 and _core_v4 (CMakeLists.txt), each with its own
// -march and its own namespace (isa_v2, isa_v3, isa_v4): no symbol of one level can stand in
// for another's, even if two modules are loaded in one process.
#pragma once

#ifndef FASTLRP_ISA_NS
#define FASTLRP_ISA_NS isa_native
#endif

#ifndef FASTLRP_ISA_LEVEL
#define FASTLRP_ISA_LEVEL "native"
#endif
