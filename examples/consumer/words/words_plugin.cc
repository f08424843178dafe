// Registration only: built into libwords.so by procpool_plugin.
#include "words/words.h"

PROCPOOL_TASK("count_words", words::CountWords);
PROCPOOL_TASK("parse_count", words::ParseCount);
PROCPOOL_TASK("acronym", words::Acronym);

PROCPOOL_PLUGIN("words");
