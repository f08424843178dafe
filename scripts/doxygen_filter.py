#!/usr/bin/env python3
"""Doxygen INPUT_FILTER: reads procpool's plain `//` header comments as docs.

procpool's headers document their contract in ordinary `//` comments (see
STYLE.md, "The header comment is the contract"). Doxygen only reads `///`,
`//!` and `/** */`, so this filter rewrites (line for line, except
where a code block needs a fence line of its own):

  - the comment block at the top of a file          -> the file's docs
  - a comment block directly above a declaration at
    namespace, class or extern "C" scope            -> that declaration's docs
  - `decl;  // text` at such a scope                -> a member's docs (///<)
  - an indented run after a blank or ':' line       -> a ~~~ code block
  - `namespace *internal*`, `namespace cereal` and
    what follows a `// ---- Implementation ----` line -> blank lines (hidden)

and escapes the characters Doxygen would read as commands or HTML outside
`code spans`. Comments inside function bodies, comments separated from the
next declaration by a blank line, and preprocessor lines other than #define
are left alone.

Usage (by Doxygen): doxygen_filter.py <header>
"""

import re
import sys

SCOPE_RE = re.compile(r'\b(namespace|class|struct|union|enum|extern)\b')


def strip_code(line):
    """The line without string/char literals and its // comment."""
    out = []
    i = 0
    quote = None
    while i < len(line):
        c = line[i]
        if quote:
            if c == '\\':
                i += 2
                continue
            if c == quote:
                quote = None
            i += 1
            continue
        if c in '"\'':
            quote = c
        elif line.startswith('//', i):
            break
        else:
            out.append(c)
        i += 1
    return ''.join(out)


def comment_start(line):
    """Index of the // that starts the line's comment, or -1."""
    i = 0
    quote = None
    while i < len(line):
        c = line[i]
        if quote:
            if c == '\\':
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in '"\'':
            quote = c
        elif line.startswith('//', i):
            return i
        i += 1
    return -1


def escape(text, in_quote=False):
    """Escapes Doxygen's special characters outside `code spans` and
    "quoted text" (which Doxygen shows as is, and where a quote may continue
    from the line before). Returns the text and whether a quote is open."""
    out = []
    in_code = False
    for ch in text:
        if ch == '`' and not in_quote:
            in_code = not in_code
        elif ch == '"' and not in_code:
            in_quote = not in_quote
        elif not in_code and not in_quote and ch in '\\@<>#&%$':
            out.append('\\')
        out.append(ch)
    return ''.join(out), in_quote


def convert_block(lines, is_file_doc):
    """Rewrites one block of full-line // comments as /// doc lines."""
    indent = lines[0][:len(lines[0]) - len(lines[0].lstrip())]
    texts = []
    for line in lines:
        body = line.strip()[2:]
        texts.append(body[1:] if body.startswith(' ') else body)
    # Find the preformatted runs: indented lines after a blank line or a
    # line ending in ':'; runs separated only by blank lines are one run.
    verbatim = [False] * len(texts)
    k = 0
    while k < len(texts):
        prev = texts[k - 1] if k > 0 else ''
        if (texts[k].startswith('  ') and (prev.strip() == '' or prev.rstrip().endswith(':'))
                and not re.match(r'\s*([-*]|\d+\.)\s', texts[k])):
            j = k
            while j < len(texts) and (texts[j].startswith('  ') or (
                    texts[j].strip() == '' and j + 1 < len(texts) and texts[j + 1].startswith('  '))):
                verbatim[j] = True
                j += 1
            k = j
        else:
            k += 1
    # Each run becomes a ~~~ fenced block (Doxygen keeps the /// markers
    # inside \verbatim). A fence takes the place of the blank line before or
    # after a run, so line numbers stay put; it is inserted when there is
    # none.
    out = []
    in_quote = False

    def esc(t):
        nonlocal in_quote
        e, in_quote = escape(t, in_quote)
        return e

    for k, t in enumerate(texts):
        opens = verbatim[k] and (k == 0 or not verbatim[k - 1])
        closes = not verbatim[k] and k > 0 and verbatim[k - 1]
        if closes:
            if t.strip():
                out.append(indent + '/// ~~~')
            else:
                out.append(indent + '/// ~~~')
                continue
        if verbatim[k]:
            if opens and out and out[-1] == indent + '///':
                out[-1] = indent + '/// ~~~'
            elif opens:
                out.append(indent + '/// ~~~')
            out.append(indent + '/// ' + t if t.strip() else indent + '///')
            continue
        out.append(indent + '/// ' + esc(t) if t.strip() else indent + '///')
    if verbatim[-1]:
        out.append(indent + '/// ~~~')
    if is_file_doc:
        out[-1] += ' \\file'
    return out


HIDDEN_NAMESPACE_RE = re.compile(r'^\s*namespace\s+([\w:]*internal\w*|cereal)\s*\{')


def hide_implementation(lines):
    """Blanks internal namespaces and `---- Implementation ----` sections."""
    hidden = [False] * len(lines)
    depth = 0
    region = None       # None, 'namespace' or 'section'
    region_depth = 0    # the brace depth the region started at
    continuation = False
    for n, line in enumerate(lines):
        stripped = line.strip()
        if region is None:
            if HIDDEN_NAMESPACE_RE.match(line):
                region, region_depth = 'namespace', depth
            elif stripped.startswith('//') and '---- Implementation ----' in stripped:
                region, region_depth = 'section', depth
        if continuation or stripped.startswith('#'):
            continuation = line.rstrip().endswith('\\')
            hidden[n] = region is not None
            continue
        for ch in strip_code(line):
            if ch == '{':
                depth += 1
            elif ch == '}':
                depth -= 1
        if region == 'namespace':
            hidden[n] = True  # through the brace that closes it
            if depth == region_depth and '}' in strip_code(line):
                region = None
        elif region == 'section':
            if depth < region_depth:
                region = None  # the enclosing scope's closing brace stays
            else:
                hidden[n] = True
    return ['' if h else l for l, h in zip(lines, hidden)]


def main():
    with open(sys.argv[1], encoding='utf-8') as f:
        lines = hide_implementation(f.read().split('\n'))
    out = []
    stack = []          # 'scope' or 'body' for each open brace
    pending = ''        # code since the last ; { or }
    seen_code = False
    continuation = False
    trailing_col = -1   # column of the previous line's ///< comment
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        in_scope = all(s == 'scope' for s in stack)
        if continuation or stripped.startswith('#'):
            continuation = line.rstrip().endswith('\\')
            out.append(line)
            trailing_col = -1
            i += 1
            continue
        if stripped.startswith('//'):
            j = i
            while j < len(lines) and lines[j].strip().startswith('//'):
                j += 1
            block = lines[i:j]
            col = len(line) - len(line.lstrip())
            if trailing_col >= 0 and col == trailing_col and in_scope:
                # Continues the member comment of the line above.
                out.extend(l[:col] + '///<' + escape(l[col + 2:])[0] for l in block)
            elif not in_scope:
                out.extend(block)
            elif not seen_code:
                out.extend(convert_block(block, is_file_doc=True))
            elif j < len(lines) and lines[j].strip() and (
                    not lines[j].strip().startswith('#') or lines[j].strip().startswith('#define')):
                out.extend(convert_block(block, is_file_doc=False))
            else:
                out.extend(block)  # detached: not about the next declaration
            trailing_col = -1
            seen_code = True
            i = j
            continue
        code = strip_code(line)
        trailing_col = -1
        if stripped:
            seen_code = True
        c = comment_start(line)
        if c >= 0 and in_scope:
            before = line[:c].rstrip()
            if before.endswith((';', ',')) and before.strip() not in ('};', '}'):
                line = line[:c] + '///<' + escape(line[c + 2:])[0]
                trailing_col = c
        out.append(line)
        for ch in code:
            if ch == '{':
                stack.append('scope' if SCOPE_RE.search(pending) else 'body')
                pending = ''
            elif ch == '}':
                if stack:
                    stack.pop()
                pending = ''
            elif ch == ';':
                pending = ''
            else:
                pending += ch
        pending += ' '
        i += 1
    sys.stdout.write('\n'.join(out))


if __name__ == '__main__':
    main()
