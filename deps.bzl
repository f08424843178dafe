"""What procpool needs to build offline, declared once for every workspace.

In a WORKSPACE that uses procpool (and in procpool's own):

    local_repository(name = "procpool", path = "/path/to/procpool")
    load("@procpool//:deps.bzl", "procpool_dependencies")
    procpool_dependencies()

procpool_dependencies() declares, each only if the workspace has not declared a
repository of that name already (so a consumer's own declarations win):

  @rules_cc, @rules_java, @remote_coverage_tools
      Bazel 4.2.3's bazel_tools downloads these on the first C++ build. These
      are procpool's local stand-ins (third_party/stubs/), so nothing is
      fetched from the internet.
  @procpool_system_libs
      Debian's Abseil (libabsl-dev), cereal (libcereal-dev), GoogleTest
      (libgtest-dev, libgmock-dev) and Google Benchmark (libbenchmark-dev)
      as cc_library targets: //:absl, //:cereal, //:gtest, //:gtest_main,
      //:benchmark, //:benchmark_main (third_party/system_libs.BUILD, with
      Abseil's library list from third_party/absl.bzl).
      The worker links libseccomp (libseccomp-dev) for its sandbox.
      procpool's public API uses absl::Status, so a program that links
      procpool must use this same Abseil. Fetching the repository fails with
      an apt-get hint if Abseil's or cereal's headers are missing.

Call it before anything else that might declare these names, and before
Bazel's own defaults (which the end of every WORKSPACE adds).
"""

# Every repository declared here lives inside procpool's source tree, found
# relative to this file, so it works whether procpool is the main workspace
# or an external repository under any name.
_PROCPOOL_ROOT_FILE = Label("//:deps.bzl")

def _procpool_root(repository_ctx):
    return repository_ctx.path(_PROCPOOL_ROOT_FILE).dirname

def _procpool_stub_repository_impl(repository_ctx):
    src = _procpool_root(repository_ctx).get_child("third_party").get_child("stubs").get_child(repository_ctx.attr.stub)
    if not src.exists:
        fail("procpool: stub repository %s not found at %s" % (repository_ctx.attr.stub, src))
    # Bazel follows symlinks into the source tree, directories included.
    for child in src.readdir():
        repository_ctx.symlink(child, child.basename)

_procpool_stub_repository = repository_rule(
    implementation = _procpool_stub_repository_impl,
    attrs = {"stub": attr.string(mandatory = True)},
    doc = "A directory of third_party/stubs/ as a repository.",
)

# Headers that must be present for procpool to compile, and the Debian
# package that installs each.
_REQUIRED_HEADERS = {
    "absl/status/statusor.h": "libabsl-dev",
    "cereal/cereal.hpp": "libcereal-dev",
    "seccomp.h": "libseccomp-dev",
}

def _procpool_system_libs_impl(repository_ctx):
    missing = []
    for header, package in _REQUIRED_HEADERS.items():
        if not repository_ctx.path("/usr/include/" + header).exists:
            missing.append("%s (/usr/include/%s)" % (package, header))
    if missing:
        fail("procpool needs Debian packages that are not installed: %s. " % ", ".join(missing) +
             "Install them with: apt-get install libabsl-dev libcereal-dev libseccomp-dev " +
             "(procpool's scripts/setup.sh installs everything it uses).")
    repository_ctx.file("WORKSPACE", 'workspace(name = "%s")\n' % repository_ctx.name)
    third_party = _procpool_root(repository_ctx).get_child("third_party")
    repository_ctx.symlink(third_party.get_child("system_libs.BUILD"), "BUILD.bazel")
    # The list of Abseil's libraries, shared with procpool's own BUILD files.
    repository_ctx.symlink(third_party.get_child("absl.bzl"), "absl.bzl")

_procpool_system_libs = repository_rule(
    implementation = _procpool_system_libs_impl,
    doc = "Debian's system libraries as cc_library targets.",
)

def procpool_dependencies():
    """Declares the repositories procpool needs, skipping any already declared."""
    for stub in ["rules_cc", "rules_java", "remote_coverage_tools"]:
        if native.existing_rule(stub) == None:
            _procpool_stub_repository(name = stub, stub = stub)
    if native.existing_rule("procpool_system_libs") == None:
        _procpool_system_libs(name = "procpool_system_libs")
