"""procpool_plugin: build a task plugin shared object."""

def procpool_plugin(name, srcs = [], deps = [], copts = [], linkopts = [], **kwargs):
    """Builds `lib<name>.so`, a plugin a procpool worker can load.

    The shared object is position-independent, exports only the plugin entry
    point (procpool_plugin_manifest), and links //tasks but never the pool.

    Args:
      name: plugin name; the target is `lib<name>.so`.
      srcs: sources; one of them uses PROCPOOL_PLUGIN(...).
      deps: libraries with the task logic.
      copts: extra compiler flags.
      linkopts: extra linker flags.
      **kwargs: passed to cc_binary (testonly, visibility, tags...).

    A cc_library in the same package must not be called `name`: Bazel builds
    its shared library as lib<name>.so too, and the two outputs clash. Call
    the logic library e.g. `<name>_tasks`.
    """
    existing = native.existing_rule(name)
    if existing and existing["kind"] == "cc_library":
        fail(("procpool_plugin(name = \"%s\") builds lib%s.so, the same file as the " +
              "shared library of cc_library \"%s\" in this package; rename the " +
              "library (e.g. \"%s_tasks\")") % (name, name, name, name))
    native.cc_binary(
        name = "lib%s.so" % name,
        srcs = srcs,
        deps = deps + [Label("//tasks")],
        copts = ["-fvisibility=hidden"] + copts,
        linkshared = True,
        additional_linker_inputs = [Label("//tasks:plugin.lds")],
        linkopts = ["-Wl,--version-script=$(location %s)" % Label("//tasks:plugin.lds")] + linkopts,
        **kwargs
    )
