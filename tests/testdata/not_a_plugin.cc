// A well-formed shared object that is not a procpool plugin: it exports no
// procpool_plugin_manifest.
extern "C" int not_a_plugin_answer() { return 42; }
