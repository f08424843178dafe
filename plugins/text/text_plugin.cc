// Registers the text tasks; built into libtext.so.
#include "plugins/text/text.h"
#include "tasks/task.h"

namespace procpool::text {

PROCPOOL_TASK("normalize", Normalize);
PROCPOOL_TASK("normalize_fold", NormalizeFold);
PROCPOOL_TASK("extract_emails", ExtractEmails);
PROCPOOL_TASK("extract_urls", ExtractUrls);
PROCPOOL_TASK("extract_phones", ExtractPhones);
PROCPOOL_TASK("extract_phones_in", ExtractPhonesIn);
PROCPOOL_TASK("token_count", TokenCount);
PROCPOOL_TASK("simhash", SimHash);
PROCPOOL_TASK("simhash_distance", SimHashDistance);

}  // namespace procpool::text

PROCPOOL_PLUGIN("text");
