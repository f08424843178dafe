"""pool_test: a multi-process GoogleTest binary using the pool fixture."""

def pool_test(name, srcs = None, data = [], deps = [], **kwargs):
    """A medium-sized cc_test of `<name>.cc` linked with the pool fixture.

    The fixture brings the math, faults and probe plugins as runfiles.

    Args:
      name: test name; the source defaults to `<name>.cc`.
      srcs: sources, if not just `<name>.cc`.
      data: extra runfiles.
      deps: extra dependencies.
      **kwargs: passed to cc_test.
    """
    native.cc_test(
        name = name,
        size = "medium",
        srcs = srcs if srcs != None else [name + ".cc"],
        data = data,
        deps = deps + [
            Label("//pool"),
            Label("//tests/testing:pool_fixture"),
            Label("//third_party:absl"),
            Label("//third_party:gtest_main"),
        ],
        **kwargs
    )
