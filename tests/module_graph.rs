//! The library's modules form no cycle: at every level of `src/`, the sibling modules (a file,
//! or a folder taken whole) depend on each other in one direction only. A parent's `mod.rs` and
//! its children may use each other (the parent declares them); siblings may not go both ways,
//! because then neither can be read, tested or moved without the other.
//!
//! Dependencies are read from the code as Rust (`use` trees, paths, and `crate::`/`super::` paths
//! inside macro calls); comments, strings and `#[cfg(test)]` items do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

type ModulePath = Vec<String>;

/// Every module file of the library, by its module path (`src/lib.rs` is the root, `[]`).
fn module_files() -> BTreeMap<ModulePath, PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src");
            let mut segments: ModulePath =
                relative.iter().map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
            match segments.last().map(String::as_str) {
                // The binary is a crate of its own.
                Some("main") if segments.len() == 1 => continue,
                Some("lib") if segments.len() == 1 => segments.clear(),
                Some("mod") => {
                    segments.pop();
                }
                _ => {}
            }
            files.insert(segments, path);
        }
    }
    files
}

/// The module paths one file refers to, resolved to absolute paths (not yet to modules).
struct References<'a> {
    module: &'a ModulePath,
    modules: &'a BTreeMap<ModulePath, PathBuf>,
    found: Vec<ModulePath>,
}

impl References<'_> {
    fn add(&mut self, segments: Vec<String>) {
        let Some(first) = segments.first() else { return };
        let absolute = match first.as_str() {
            "crate" => segments[1..].to_vec(),
            "self" => self.module.iter().cloned().chain(segments[1..].iter().cloned()).collect(),
            "super" => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let mut base = self.module.clone();
                base.truncate(base.len().saturating_sub(ups));
                base.into_iter().chain(segments[ups..].iter().cloned()).collect()
            }
            child => {
                // A path starting at a child module (`decide::Mode` in `controller/mod.rs`).
                let mut candidate = self.module.clone();
                candidate.push(child.to_string());
                if !self.modules.contains_key(&candidate) {
                    return;
                }
                self.module.iter().cloned().chain(segments.iter().cloned()).collect()
            }
        };
        self.found.push(absolute);
    }

    fn add_use_tree(&mut self, prefix: &[String], tree: &syn::UseTree) {
        let extend = |name: &syn::Ident| prefix.iter().cloned().chain([name.to_string()]).collect::<Vec<_>>();
        match tree {
            syn::UseTree::Path(p) => self.add_use_tree(&extend(&p.ident), &p.tree),
            syn::UseTree::Name(n) if n.ident == "self" => self.add(prefix.to_vec()),
            syn::UseTree::Name(n) => self.add(extend(&n.ident)),
            syn::UseTree::Rename(r) => self.add(extend(&r.ident)),
            syn::UseTree::Glob(_) => self.add(prefix.to_vec()),
            syn::UseTree::Group(g) => g.items.iter().for_each(|item| self.add_use_tree(prefix, item)),
        }
    }

    /// `crate::a::b` and `super::a` inside a macro call's tokens.
    fn add_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(group) => self.add_tokens(group.stream()),
                TokenTree::Ident(ident) if ident == "crate" || ident == "super" => {
                    let mut segments = vec![ident.to_string()];
                    let mut j = i + 1;
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(TokenTree::Ident(next))) =
                        (trees.get(j), trees.get(j + 1), trees.get(j + 2))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        segments.push(next.to_string());
                        j += 3;
                    }
                    if segments.len() > 1 {
                        self.add(segments);
                    }
                    i = j.max(i + 1);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg") && attr.meta.require_list().is_ok_and(|list| list.tokens.to_string() == "test")
    })
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

impl<'ast> Visit<'ast> for References<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if !is_test_only(item_attrs(item)) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_impl_item_fn(self, item);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.add_use_tree(&[], &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.add(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.add_tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// Module → the modules it uses (each reference resolved to the deepest module file it names).
fn dependencies() -> BTreeMap<ModulePath, BTreeSet<ModulePath>> {
    let modules = module_files();
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("source is readable");
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut references = References { module, modules: &modules, found: Vec::new() };
        references.visit_file(&parsed);
        let mut targets = BTreeSet::new();
        for mut path in references.found {
            while !path.is_empty() && !modules.contains_key(&path) {
                path.pop();
            }
            if &path != module {
                targets.insert(path);
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

/// At each level, the sibling-to-sibling edges that lie on a cycle, as "a → b (file → file)".
fn cycles(graph: &BTreeMap<ModulePath, BTreeSet<ModulePath>>) -> Vec<String> {
    let mut found = Vec::new();
    for parent in graph.keys() {
        // Edges between the children of `parent`, each child standing for its whole subtree.
        let child_of = |path: &ModulePath| -> Option<String> {
            (path.len() > parent.len() && path.starts_with(parent)).then(|| path[parent.len()].clone())
        };
        let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for (from, targets) in graph {
            let Some(a) = child_of(from) else { continue };
            for to in targets {
                match child_of(to) {
                    Some(b) if b != a => edges.entry((a.clone(), b)).or_default().push(format!(
                        "{} → {}",
                        from.join("::"),
                        to.join("::")
                    )),
                    _ => {}
                }
            }
        }
        let reaches = |from: &str, to: &str| -> bool {
            let mut seen = BTreeSet::new();
            let mut pending = vec![from.to_string()];
            while let Some(node) = pending.pop() {
                if node == to {
                    return true;
                }
                if seen.insert(node.clone()) {
                    pending.extend(edges.keys().filter(|(a, _)| *a == node).map(|(_, b)| b.clone()));
                }
            }
            false
        };
        for ((a, b), via) in &edges {
            if reaches(b, a) {
                let level = if parent.is_empty() { "crate".to_string() } else { parent.join("::") };
                found.push(format!("in {level}: {a} → {b} (via {})", via.join(", ")));
            }
        }
    }
    found
}

#[test]
fn sibling_modules_do_not_depend_on_each_other_both_ways() {
    let graph = dependencies();
    let cycles = cycles(&graph);
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_check_sees_a_cycle_and_the_parent_child_exception() {
    let module = |s: &str| -> ModulePath { s.split("::").filter(|p| !p.is_empty()).map(String::from).collect() };
    let graph: BTreeMap<ModulePath, BTreeSet<ModulePath>> = [
        (module(""), BTreeSet::from([module("a"), module("b")])),
        (module("a"), BTreeSet::from([module("b::x")])),
        (module("b"), BTreeSet::from([module("b::x")])),
        (module("b::x"), BTreeSet::from([module("a"), module("b")])),
    ]
    .into();
    let found = cycles(&graph);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|c| c.starts_with("in crate:")), "{found:?}");
    // The real graph is read: the controller's driver uses the renderer, and a child module is
    // reached through `super::`.
    let real = dependencies();
    assert!(real[&module("controller")].contains(&module("render")), "{:?}", real[&module("controller")]);
    assert!(
        real[&module("controller::sync")].contains(&module("controller")),
        "{:?}",
        real[&module("controller::sync")]
    );
    assert!(real[&module("render")].contains(&module("discover")), "{:?}", real[&module("render")]);
}
