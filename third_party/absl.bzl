"""How procpool links Debian's Abseil (libabsl-dev 20220623).

ABSL_LINK_LIBS is the one list of libraries, in link order (the output of
`pkg-config --libs absl_status absl_statusor absl_synchronization absl_time
absl_strings absl_hash absl_raw_hash_set`). system_libs.BUILD links them as
shared libraries (@procpool_system_libs//:absl, what //pool and every
program that uses it links); //pool:procpool_worker links the same list from
Debian's static archives (ABSL_STATIC_LINKOPTS).
"""

ABSL_LINK_LIBS = [
    "absl_statusor",
    "absl_status",
    "absl_strerror",
    "absl_str_format_internal",
    "absl_cord",
    "absl_cordz_info",
    "absl_cord_internal",
    "absl_cordz_functions",
    "absl_cordz_handle",
    "absl_hash",
    "absl_city",
    "absl_bad_variant_access",
    "absl_low_level_hash",
    "absl_raw_hash_set",
    "absl_bad_optional_access",
    "absl_hashtablez_sampler",
    "absl_exponential_biased",
    "absl_synchronization",
    "absl_graphcycles_internal",
    "absl_stacktrace",
    "absl_symbolize",
    "absl_debugging_internal",
    "absl_demangle_internal",
    "absl_malloc_internal",
    "absl_time",
    "absl_civil_time",
    "absl_strings",
    "absl_strings_internal",
    "atomic",
    "rt",
    "absl_base",
    "absl_spinlock_wait",
    "absl_int128",
    "absl_time_zone",
    "absl_throw_delegate",
    "absl_raw_logging_internal",
    "absl_log_severity",
]

# Linking the shared libraries: -labsl_statusor ... -labsl_log_severity.
ABSL_SHARED_LINKOPTS = ["-l" + lib for lib in ABSL_LINK_LIBS]

_ABSL_ARCHIVES = ["lib%s.a" % lib for lib in ABSL_LINK_LIBS if lib.startswith("absl_")]

# Linker flags of a cc_binary that gets Abseil from the static archives
# (/usr/lib/x86_64-linux-gnu/libabsl_*.a) although its deps carry
# ABSL_SHARED_LINKOPTS through @procpool_system_libs//:absl.
#
# Bazel 4.2.3 puts a cc_binary's own linkopts after its objects and before
# the linkopts of its deps, so the archives resolve every Abseil symbol
# first; --as-needed then leaves out the shared libraries that end up
# providing nothing (all of Abseil's, and -ldl, -lrt, -latomic when unused;
# Bazel's toolchain links with -no-as-needed otherwise). glibc and
# libstdc++ stay shared.
#
# --exclude-libs keeps the archives' symbols out of the executable's dynamic
# symbol table. Without it the linker exports every Abseil symbol that the
# (unused) shared libraries on the command line also define, and a plugin
# that loads Debian's shared Abseil (the text plugin does, through
# libphonenumber) would get some functions bound to the worker's copy and
# others to its own, each with its own internal state. With it, the two
# copies never mix: the worker's is private, the plugin's is its own.
#
# tests/pool/worker_link_test checks the result.
ABSL_STATIC_LINKOPTS = [
    "-Wl,--as-needed",
    "-Wl,--exclude-libs," + ":".join(_ABSL_ARCHIVES),
] + ["-l:" + a for a in _ABSL_ARCHIVES]
