//! The documents agree with what they describe (issue #32): the README's kernel table is one
//! table with a row per variant, the page's navigation names its sections as their headings
//! do, and the README's "What the page shows" lists those sections in order. (Every shell
//! and Python example of the README and docs/ is run as pasted by
//! `scripts/docs_examples.py`, a lane of CI's own.)

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The text between `start` and the next `end` after it.
fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let a = s.find(start).unwrap_or_else(|| panic!("no `{start}`")) + start.len();
    let b = s[a..]
        .find(end)
        .unwrap_or_else(|| panic!("no `{end}` after `{start}`"));
    &s[a..a + b]
}

#[test]
fn the_kernel_table_is_one_table_with_every_variant() {
    let readme = read("README.md");
    let section = between(&readme, "### Kernel variants and autotuning", "\n### ");
    let table: Vec<&str> = section
        .lines()
        .skip_while(|l| !l.starts_with("| # |"))
        .take_while(|l| l.starts_with('|'))
        .collect();
    let rows = &table[2..];
    assert_eq!(rows.len(), qkv_wgpu::Kernel::ALL.len(), "{table:#?}");
    for (k, row) in qkv_wgpu::Kernel::ALL.iter().zip(rows) {
        assert!(
            row.starts_with(&format!("| {} | `{}", k.number(), k.name())),
            "{row}"
        );
    }
}

/// The page's sections as (number, title), from its `<h2>` headings.
fn page_sections() -> Vec<(String, String)> {
    let page = read("web/index.html");
    page.split("<h2 ")
        .skip(1)
        .map(|h| {
            let num = between(h, "<span class=\"num\">", "</span>").to_string();
            let title = between(h, "</span>", "</h2>").trim().to_string();
            (num, title)
        })
        .collect()
}

#[test]
fn the_pages_navigation_names_every_section_as_its_heading_does() {
    let page = read("web/index.html");
    let nav = between(&page, "<nav class=\"toc\"", "</nav>");
    let links: Vec<String> = nav
        .split("<a ")
        .skip(1)
        .map(|a| between(a, "\">", "</a>").trim().to_string())
        .collect();
    let want: Vec<String> = page_sections()
        .iter()
        .map(|(n, t)| format!("{n}. {t}"))
        .collect();
    assert_eq!(links, want);
}

#[test]
fn the_readme_lists_the_pages_sections_in_order() {
    let readme = read("README.md");
    // The numbered list after the sentence, up to the paragraph after it.
    let list = between(&readme, "What the page shows", "\nWhere WebGPU");
    let listed: Vec<String> = list
        .split("**")
        .skip(1)
        .step_by(2)
        .map(|t| t.trim_end_matches(':').to_string())
        .collect();
    let want: Vec<String> = page_sections().into_iter().map(|(_, t)| t).collect();
    assert_eq!(listed, want);
}
