#!/usr/bin/env python3
"""Writes the crate's public API as text, from the HTML that `cargo doc` renders.

Usage: public_api.py DOC_DIR            prints the API of the crate documented in DOC_DIR
                                        (target/doc/dfns_signer)

For every public item (the pages `all.html` links to, so nothing `#[doc(hidden)]`) it prints the
item's path and declaration, the signatures of its inherent methods, the traits it implements
(with their associated types) and whether it is Send and Sync. Blanket implementations and the
other auto traits are left out: they follow from the rest or from the toolchain, not from us.
hsm-config/check-public-api.sh compares the result with the committed tests/public-api.txt.

rustdoc's HTML is not a stable format; this reads only three of its landmarks (`all.html`'s item
links, `item-decl`, `code-header`) and fails loudly when it finds none of them.
"""

import html
import os
import re
import sys

ITEM_LINK = re.compile(r'<a href="([^"]+\.html)">')
DECL = re.compile(r'<pre class="rust item-decl"><code>(.*?)</code></pre>', re.S)
HEADER = re.compile(r'<(h3|h4) class="code-header">(.*?)</\1>', re.S)
TAG = re.compile(r"<[^>]+>")
# Where the sections of an item page start; everything after the blanket impls is std's.
SECTION = re.compile(r'id="(implementations|trait-implementations|synthetic-implementations|'
                     r'blanket-implementations|required-methods|provided-methods|'
                     r'implementors|foreign-impls|variants|fields)"')
KEPT_AUTO_TRAITS = {"Send", "Sync", "!Send", "!Sync"}


def text(fragment):
    """Tags and toggle labels stripped, entities decoded, whitespace collapsed, and the layout
    rustdoc gives a long signature broken over lines (space after an opening bracket, comma
    before a closing one) undone, so a signature reads the same whatever its length."""
    fragment = re.sub(r'<summary class="hideme">.*?</summary>', "", fragment, flags=re.S)
    plain = html.unescape(TAG.sub("", fragment))
    plain = re.sub(r"\s+", " ", plain).strip()
    plain = re.sub(r"([(\[<])\s+", r"\1", plain)
    return re.sub(r",\s*([)}\]>])", r"\1", plain)


def item_pages(doc_dir):
    with open(os.path.join(doc_dir, "all.html"), encoding="utf-8") as f:
        page = f.read()
    start = page.index('id="main-content"')
    links = sorted(set(ITEM_LINK.findall(page[start:])))
    if not links:
        sys.exit(f"public_api.py: no item links in {doc_dir}/all.html; has rustdoc's HTML changed?")
    return links


def describe(doc_dir, crate, link):
    kind, name = os.path.basename(link)[:-len(".html")].split(".", 1)
    module = os.path.dirname(link)
    path = "::".join([crate] + (module.split("/") if module else []) + [name])
    with open(os.path.join(doc_dir, link), encoding="utf-8") as f:
        page = f.read()
    lines = [f"{kind} {path}"]
    decl = DECL.search(page)
    if decl:
        lines.append(f"  {text(decl.group(1))}")
    # Walk the headers in page order, knowing which section each is in.
    marks = [(m.start(), m.group(1)) for m in SECTION.finditer(page)]
    in_trait_impl = False
    for header in HEADER.finditer(page):
        section = next((name for at, name in reversed(marks) if at < header.start()), "")
        if section in ("blanket-implementations", "variants", "fields"):
            continue
        level, signature = header.group(1), text(header.group(2))
        if level == "h3":
            in_trait_impl = " for " in signature
            if section == "synthetic-implementations":
                trait = signature.split(" for ")[0].split()[-1]
                if trait not in KEPT_AUTO_TRAITS:
                    continue
            lines.append(f"  {signature}")
        elif section in ("required-methods", "provided-methods"):
            lines.append(f"    {signature}")
        elif not in_trait_impl or signature.startswith("type "):
            # Inherent methods; of a trait impl only its associated types (the methods are the
            # trait's own).
            lines.append(f"    {signature}")
    return lines


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    doc_dir = sys.argv[1].rstrip("/")
    crate = os.path.basename(doc_dir)
    for link in item_pages(doc_dir):
        print("\n".join(describe(doc_dir, crate, link)))


if __name__ == "__main__":
    main()
