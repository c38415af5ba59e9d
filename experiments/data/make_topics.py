#!/usr/bin/env python3
"""Build a small binary sentence-classification set from python-reference.txt.

Input: experiments/data/python-reference.txt (the Python Language Reference
topics from CPython's Lib/pydoc_data/topics.py, PSF licence; documents are
separated by blank lines, see SOURCE.md).

Output (tab-separated, header "sentence<TAB>label", UTF-8, LF line ends):
  experiments/data/topics-train.tsv   300 sentences per class by default
  experiments/data/topics-dev.tsv     100 sentences per class by default

Labels are assigned per section, never per sentence:
  1 = execution and control flow: statements ("if", "for", "try", "raise",
      "with", "import", "global", ...), "except"/"finally" clauses,
      exceptions, tracebacks and frames, the execution model (naming,
      binding, scopes), pattern matching, and the "pdb" debugger.
  0 = values and data types: literals, numbers and arithmetic, bitwise and
      shifting operations, comparisons and operator precedence, strings and
      string formatting, sequences, lists, tuples, ranges, sets,
      dictionaries, slicing and subscription, container emulation.

How it works (everything is deterministic; standard library only):
 1. Split the file into documents at blank lines, and each document into
    sections at its reST-style headings (a title line underlined with
    *, =, -, ~ or ^ of the same length).
 2. Pick a section's family from the nearest heading (the section's own
    title, else its parent's, ...) that matches one of the keyword lists
    below. A heading that matches both families, or a STOP keyword
    (definitions, assignment, expressions, identifiers, special methods,
    the standard type hierarchy, ...), excludes the section. Sections that
    match nothing are left out.
 3. Drop code: grammar productions ("::="), doctest lines, tables, indented
    code blocks, and method/command signature lines; split the remaining
    prose into sentences.
 4. Keep sentences of 5..60 words that start with a capital letter or a
    quote, end with ".", and contain no code outside "quoted" spans
    (the reference quotes inline code with double quotes).
 5. Remove exact duplicates (several topics repeat each other) and any
    sentence that occurs in both families.
 6. Sort, shuffle each family with a fixed seed, take the same number from
    each family (balanced), split into train/dev, shuffle each split.

Run from the repository root:
  python3 experiments/data/make_topics.py
"""

import argparse
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Heading underline: one of *=-~^ repeated, same length as the title line.
UNDERLINE = re.compile(r'([*=\-~^])\1{2,}')

# Family keywords, matched case-insensitively against section titles.
FAMILY_1 = re.compile(
    r'statement|clause|exception|debugger|pdb|traceback|frame objects|'
    r'context manager|execution|structure of a program|naming|binding|'
    r'resolution of names|dynamic features|\bmatch|pattern|guards|case blocks',
    re.I)
FAMILY_0 = re.compile(
    r'literal|string|bytes|format|numeric|number|integer|float|imaginary|'
    r'complex|arithmetic|bitwise|shifting|operator|operations|comparison|'
    r'boolean|truth value|sequence|\blists?\b|tuple|range|dict|mapping|'
    r'set types|slic|subscription|container|display',
    re.I)
# Headings whose text mixes both vocabularies or is about something else.
STOP = re.compile(
    r'definition|assignment|expression|identifier|special method names|'
    r'standard type hierarchy|objects, values|customizing',
    re.I)

WORD = re.compile(r'["“(]?[A-Za-z][A-Za-z\'’-]*[”"),.;:]*')
LIST_MARK = re.compile(r'^(\* |[0-9]+\. |[IVX]+\. |\[[0-9]+\] )')
SENT_SPLIT = re.compile(r'(?<=[.!?])\s+(?=[A-Z"“(])')
EMPHASIS = re.compile(r'\*\*?([^*"\s][^*"\n]{0,60}?)\*\*?')
ABBREV_END = re.compile(r'\b(e\.g|i\.e|etc|vs|cf)\.$')


def sections(doc):
    """Yield (heading stack, body lines) for each heading in a document."""
    lines = doc.split('\n')
    out, stack, levels, body = [], [], [], None
    i = 0
    while i < len(lines):
        if (i + 1 < len(lines) and lines[i].strip()
                and UNDERLINE.fullmatch(lines[i + 1])
                and len(lines[i + 1]) == len(lines[i])):
            ch = lines[i + 1][0]
            if ch not in levels:
                levels.append(ch)
            depth = levels.index(ch)
            stack = stack[:depth] + [lines[i]]
            body = []
            out.append((list(stack), body))
            i += 2
            continue
        if body is not None:
            body.append(lines[i])
        i += 1
    return out


def family(stack):
    """1, 0 or None for a heading stack (outermost first)."""
    for title in reversed(stack):
        if STOP.search(title):
            return None
        one, zero = bool(FAMILY_1.search(title)), bool(FAMILY_0.search(title))
        if one and zero:
            return None
        if one:
            return 1
        if zero:
            return 0
    return None


def is_prose(text):
    words = text.split()
    if len(words) < 4 or text.lstrip().startswith('#'):
        return False
    return sum(1 for w in words if WORD.fullmatch(w)) / len(words) >= 0.7


def indent(line):
    return len(line) - len(line.lstrip(' '))


def prose_blocks(body):
    """Join prose lines into blocks; code lines and list items break blocks."""
    blocks, cur = [], []
    prev_code = prev_colon = prev_term = False

    def flush():
        if cur:
            blocks.append(' '.join(cur))
            cur.clear()

    for k, line in enumerate(body):
        s = line.strip()
        nxt = body[k + 1] if k + 1 < len(body) else ''
        code = (not s or '::=' in s
                or s.startswith(('>>>', '...', '+-', '|', '#'))
                or (indent(line) >= 3 and (prev_code or prev_colon or prev_term)
                    and not is_prose(line)))
        item = bool(LIST_MARK.match(s)) or s.startswith('-[')
        # A signature or term line ("object.__len__(self)", "b(reak) [...]")
        # followed by its indented description.
        term = (not code and nxt.strip() and indent(nxt) >= 3
                and indent(nxt) > indent(line) and not item
                and not re.search(r'[.,;:]$', s) and not is_prose(s)
                and bool(re.search(r'[()\[\]_.\-]', s)
                         or all(w[:1].isupper() for w in s.split())))
        # A short term line ("pp expression") whose description starts on
        # the next, unindented line.
        term = term or (not code and not item and len(s.split()) <= 3
                        and not re.search(r'[.,;:]$', s)
                        and bool(re.match(r'["“A-Z]', nxt.strip())))
        if code or item or term:
            flush()
        if not code and not s.startswith('-['):
            cur.append(LIST_MARK.sub('', s, count=1))
        if term or (not code and s.endswith(':')):
            flush()
        prev_code, prev_colon, prev_term = code, s.endswith(':'), term
    flush()
    return blocks


def sentences(block):
    block = EMPHASIS.sub(r'\1', block)
    block = re.sub(r'\s+', ' ', block).strip()
    out = []
    for part in SENT_SPLIT.split(block):
        if out and ABBREV_END.search(out[-1]):
            out[-1] += ' ' + part
        else:
            out.append(part)
    return out


def keep(sentence, min_words, max_words):
    words = sentence.split()
    if not (min_words <= len(words) <= max_words):
        return False
    if not re.match(r'[A-Z"“]', sentence) or not sentence.endswith('.'):
        return False
    if re.search(r'::=|>>>|\|\s|\+--|`|[Vv]ersion [0-9]', sentence):
        return False
    quoted = sum(len(q) for q in re.findall(r'"[^"]*"', sentence))
    if quoted > 0.4 * len(sentence):
        return False
    bare = re.sub(r'"[^"]*"', ' Q ', sentence)  # text outside "code" quotes
    if '"' in bare or '*' in bare:
        return False
    if re.search(r'\w\(|[=<>{}\[\]\\]', bare):
        return False
    bare_words = bare.split()
    return sum(1 for w in bare_words if WORD.fullmatch(w)) / len(bare_words) >= 0.75


def collect(text, min_words, max_words):
    fams = {0: set(), 1: set()}
    for doc in text.split('\n\n'):
        for stack, body in sections(doc):
            fam = family(stack)
            if fam is None:
                continue
            for block in prose_blocks(body):
                for s in sentences(block):
                    s = s.replace('\t', ' ')
                    if keep(s, min_words, max_words):
                        fams[fam].add(s)
    both = fams[0] & fams[1]
    return {f: sorted(v - both) for f, v in fams.items()}


def write_tsv(path, rows):
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write('sentence\tlabel\n')
        for sentence, label in rows:
            assert '\t' not in sentence and '\n' not in sentence
            f.write(f'{sentence}\t{label}\n')


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--input', default=os.path.join(HERE, 'python-reference.txt'))
    ap.add_argument('--outdir', default=HERE)
    ap.add_argument('--seed', type=int, default=20240611)
    ap.add_argument('--train-per-class', type=int, default=300)
    ap.add_argument('--dev-per-class', type=int, default=100)
    ap.add_argument('--min-words', type=int, default=5)
    ap.add_argument('--max-words', type=int, default=60)
    args = ap.parse_args(argv)

    with open(args.input, encoding='utf-8') as f:
        text = f.read()
    fams = collect(text, args.min_words, args.max_words)
    rng = random.Random(args.seed)
    for fam in (0, 1):
        rng.shuffle(fams[fam])

    want = args.train_per_class + args.dev_per_class
    have = min(len(fams[0]), len(fams[1]))
    n = min(want, have)
    n_dev = round(n * args.dev_per_class / want)
    n_train = n - n_dev

    train, dev = [], []
    for fam in (1, 0):
        pool = fams[fam][:n]
        train += [(s, fam) for s in pool[:n_train]]
        dev += [(s, fam) for s in pool[n_train:]]
    rng.shuffle(train)
    rng.shuffle(dev)

    write_tsv(os.path.join(args.outdir, 'topics-train.tsv'), train)
    write_tsv(os.path.join(args.outdir, 'topics-dev.tsv'), dev)

    print(f'candidates: label 1 = {len(fams[1])}, label 0 = {len(fams[0])}')
    for name, rows in (('train', train), ('dev', dev)):
        ones = sum(1 for _, y in rows if y == 1)
        print(f'{name}: {len(rows)} rows, label 1 = {ones}, label 0 = {len(rows) - ones}')
    if n < want:
        print(f'note: only {have} sentences in the smaller family; '
              f'wanted {want} per class', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
