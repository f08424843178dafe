"""Compiler flags for code that includes libxml2's headers."""

# Debian installs libxml2's headers under /usr/include/libxml2.
LIBXML2_COPTS = ["-isystem", "/usr/include/libxml2"]
