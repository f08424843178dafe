// The HTML parsers' floors for poolrun's main job on a JSON Lines corpus:
// how fast libxml2 (building a tree, or streaming SAX events to empty
// handlers) and gumbo (an HTML5 parser, building its tree) parse the
// records' "text" fields, in N processes, and (with --text) the visible
// text gumbo's tree gives by the text rule, for the fidelity comparison.
//
//   html_parse_bench --mode libxml2-tree|libxml2-sax|gumbo --input X.jsonl
//                    [--procs N] [--text OUT.jsonl]
//
// Prints one JSON object: mode, procs, records, bytes, seconds. Used by
// bench/main_job.py (//bench:compare); no timing is asserted anywhere.

#include <gumbo.h>
#include <libxml/HTMLparser.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <initializer_list>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "nlohmann/json.hpp"

namespace {

std::vector<std::string> ReadTexts(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("text") && j["text"].is_string()) {
      out.push_back(j["text"].get<std::string>());
    }
  }
  return out;
}

void ParseLibxml2Tree(const std::string& html) {
  xmlDocPtr doc = htmlReadMemory(html.data(), static_cast<int>(html.size()), nullptr, "UTF-8",
                                 HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                                     HTML_PARSE_NONET | XML_PARSE_HUGE);
  if (doc != nullptr) xmlFreeDoc(doc);
}

void ParseLibxml2Sax(const std::string& html) {
  static htmlParserCtxtPtr ctxt = htmlNewParserCtxt();
  xmlSAXHandler sax{};
  sax.initialized = 1;
  *ctxt->sax = sax;
  xmlDocPtr doc = htmlCtxtReadMemory(ctxt, html.data(), static_cast<int>(html.size()), nullptr,
                                     "UTF-8",
                                     HTML_PARSE_RECOVER | HTML_PARSE_NOERROR |
                                         HTML_PARSE_NOWARNING | HTML_PARSE_NONET | XML_PARSE_HUGE);
  if (doc != nullptr) xmlFreeDoc(doc);
}

// The text rule over gumbo's tree (the lists of plugins/text/text.cc),
// walked without recursion.
bool In(std::string_view name, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names) {
    if (n == name) return true;
  }
  return false;
}

std::string VisibleText(const GumboNode* root) {
  std::string out;
  auto separate = [&] {
    if (!out.empty() && out.back() != ' ') out.push_back(' ');
  };
  auto name_of = [](const GumboNode* n) -> std::string_view {
    if (n->v.element.tag != GUMBO_TAG_UNKNOWN) return gumbo_normalized_tagname(n->v.element.tag);
    GumboStringPiece piece = n->v.element.original_tag;
    gumbo_tag_from_original_text(&piece);
    return std::string_view(piece.data, piece.length);
  };
  auto hidden = [&](const GumboNode* n) {
    const std::string_view name = name_of(n);
    if (In(name, {"script", "style", "noscript", "template", "title", "area", "base", "basefont",
                  "datalist", "link", "meta", "noembed", "noframes", "param", "rp", "iframe"})) {
      return true;
    }
    const GumboVector& attrs = n->v.element.attributes;
    for (unsigned i = 0; i < attrs.length; ++i) {
      const auto* a = static_cast<const GumboAttribute*>(attrs.data[i]);
      if (std::strcmp(a->name, "hidden") == 0) return true;
      if (std::strcmp(a->name, "style") == 0) {
        std::string compact;
        for (const char* p = a->value; *p != 0; ++p) {
          if (*p != ' ' && *p != '\t' && *p != '\n') compact.push_back(static_cast<char>(std::tolower(*p)));
        }
        if (compact.find("display:none") != std::string::npos) return true;
      }
    }
    return false;
  };
  auto block = [&](const GumboNode* n) {
    return In(name_of(n),
              {"address", "article", "aside", "blockquote", "body", "br", "caption", "center",
               "col", "colgroup", "dd", "details", "dialog", "dir", "div", "dl", "dt", "fieldset",
               "figcaption", "figure", "footer", "form", "frame", "frameset", "h1", "h2", "h3",
               "h4", "h5", "h6", "header", "hgroup", "hr", "html", "legend", "li", "listing",
               "main", "menu", "nav", "ol", "optgroup", "option", "p", "plaintext", "pre",
               "search", "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead",
               "tr", "ul", "xmp"});
  };
  // (node, next child index) pairs.
  std::vector<std::pair<const GumboNode*, unsigned>> stack = {{root, 0}};
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    const GumboVector* children =
        node->type == GUMBO_NODE_DOCUMENT ? &node->v.document.children : &node->v.element.children;
    if (next >= children->length) {
      if (node->type == GUMBO_NODE_ELEMENT && block(node)) separate();
      stack.pop_back();
      continue;
    }
    const auto* child = static_cast<const GumboNode*>(children->data[next++]);
    switch (child->type) {
      case GUMBO_NODE_TEXT:
      case GUMBO_NODE_WHITESPACE:
      case GUMBO_NODE_CDATA:
        out.append(child->v.text.text);
        break;
      case GUMBO_NODE_ELEMENT:
      case GUMBO_NODE_TEMPLATE:
        if (child->type == GUMBO_NODE_TEMPLATE || hidden(child)) break;
        if (block(child)) separate();
        stack.push_back({child, 0});
        break;
      default:
        break;
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode, input, text_out;
  int procs = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--mode") mode = argv[i + 1];
    if (flag == "--input") input = argv[i + 1];
    if (flag == "--procs") procs = std::atoi(argv[i + 1]);
    if (flag == "--text") text_out = argv[i + 1];
  }
  if (mode.empty() || input.empty() || procs < 1) {
    std::fprintf(stderr, "usage: html_parse_bench --mode libxml2-tree|libxml2-sax|gumbo "
                         "--input X.jsonl [--procs N] [--text OUT.jsonl]\n");
    return 2;
  }
  const std::vector<std::string> texts = ReadTexts(input);
  size_t bytes = 0;
  for (const std::string& t : texts) bytes += t.size();
  xmlInitParser();

  if (!text_out.empty()) {  // fidelity: gumbo's visible text, one process
    std::ofstream out(text_out, std::ios::binary | std::ios::trunc);
    for (size_t i = 0; i < texts.size(); ++i) {
      GumboOutput* o = gumbo_parse_with_options(&kGumboDefaultOptions, texts[i].data(),
                                                texts[i].size());
      nlohmann::json j = {{"id", i}, {"text", VisibleText(o->document)}};
      out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      gumbo_destroy_output(&kGumboDefaultOptions, o);
    }
    return 0;
  }

  const auto start = std::chrono::steady_clock::now();
  std::vector<pid_t> children;
  for (int k = 0; k < procs; ++k) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      for (size_t i = static_cast<size_t>(k); i < texts.size(); i += static_cast<size_t>(procs)) {
        if (mode == "libxml2-tree") {
          ParseLibxml2Tree(texts[i]);
        } else if (mode == "libxml2-sax") {
          ParseLibxml2Sax(texts[i]);
        } else if (mode == "gumbo") {
          GumboOutput* o = gumbo_parse_with_options(&kGumboDefaultOptions, texts[i].data(),
                                                    texts[i].size());
          gumbo_destroy_output(&kGumboDefaultOptions, o);
        } else {
          ::_exit(3);
        }
      }
      ::_exit(0);
    }
    children.push_back(pid);
  }
  int failed = 0;
  for (pid_t pid : children) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (failed > 0) {
    std::fprintf(stderr, "html_parse_bench: %d processes failed (mode %s)\n", failed, mode.c_str());
    return 1;
  }
  std::printf("%s\n", nlohmann::json({{"mode", mode},
                                      {"procs", procs},
                                      {"records", texts.size()},
                                      {"bytes", bytes},
                                      {"seconds", secs}})
                          .dump()
                          .c_str());
  return 0;
}
