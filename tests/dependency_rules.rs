//! ARCHITECTURE.md, "Dependency rules", checked on the source tree: only `config/` knows YAML,
//! only `queue/` knows sled, and no stage module names the config reader outside its unit
//! tests (config depends on the stages, never the reverse). Reads `src/` only.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively, in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Whether `path` is a module its parent declares only for unit tests (`#[cfg(test)]` then
/// `mod <name>;`, as `tests.rs` or `sink/test_support.rs`).
fn test_only_module(path: &Path) -> bool {
    let (Some(dir), Some(stem)) = (path.parent(), path.file_stem().and_then(|s| s.to_str())) else {
        return false;
    };
    // The parent is `mod.rs` beside it, or the folder's own `<folder>.rs` one level up.
    let parents = [dir.join("mod.rs"), dir.with_extension("rs")];
    let decl = format!("#[cfg(test)]\nmod {stem};");
    parents
        .iter()
        .filter(|p| p.as_path() != path)
        .any(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(&decl)))
}

/// The file's text before its unit-test module (`#[cfg(test)]` followed by `mod tests`); none
/// for a module declared only for unit tests.
fn product_code(path: &Path) -> String {
    if test_only_module(path) {
        return String::new();
    }
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// `(file, line number, line)` of each product-code line in `files` that contains `needle`.
fn lines_naming(files: &[PathBuf], needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for f in files {
        for (i, line) in product_code(f).lines().enumerate() {
            if line.contains(needle) {
                hits.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    hits
}

/// The stage modules' files: a stage may be one file or a folder (`status.rs` or `status/`);
/// both are checked.
fn stage_files(stages: &[&str]) -> Vec<PathBuf> {
    let src = src();
    let mut files = Vec::new();
    for stage in stages {
        let file = src.join(format!("{stage}.rs"));
        if file.is_file() {
            files.push(file);
        }
        let dir = src.join(stage);
        if dir.is_dir() {
            files.extend(rust_files(&dir));
        }
    }
    assert!(files.len() > 20, "the stage modules were not found under {}", src.display());
    files
}

/// The stages: everything but the wiring (`agent`, `reload`, `admin`, `cli`, `demo`,
/// `connection_test`) and the config reader.
const STAGES: [&str; 13] = [
    "sink",
    "source",
    "queue",
    "schema",
    "audit",
    "transform",
    "status",
    "metrics",
    "fd_limit",
    "event",
    "secret",
    "units",
    "server",
];

#[test]
fn no_stage_module_names_the_config_reader() {
    let mut stages = STAGES.to_vec();
    stages.push("settings");
    let files = stage_files(&stages);
    let hits = lines_naming(&files, "crate::config");
    assert!(
        hits.is_empty(),
        "stage modules must not depend on the config reader (ARCHITECTURE.md, Dependency rules):\n{}",
        hits.join("\n")
    );
}

#[test]
fn only_config_knows_yaml() {
    let src = src();
    let files: Vec<PathBuf> = rust_files(&src)
        .into_iter()
        .filter(|f| !f.starts_with(src.join("config")))
        .collect();
    let hits = lines_naming(&files, "serde_yaml");
    assert!(hits.is_empty(), "only src/config/ may parse YAML:\n{}", hits.join("\n"));
}

#[test]
fn only_the_queue_knows_sled() {
    let src = src();
    let files: Vec<PathBuf> = rust_files(&src).into_iter().filter(|f| !f.starts_with(src.join("queue"))).collect();
    let hits = lines_naming(&files, "sled::");
    assert!(hits.is_empty(), "only src/queue/ may use sled:\n{}", hits.join("\n"));
}

#[test]
fn no_stage_module_names_the_whole_config() {
    // A stage follows its own part of the settings (`settings::follow` in the wiring), so an
    // edit elsewhere in the file never wakes it and it cannot reach into another stage's keys.
    let hits = lines_naming(&stage_files(&STAGES), "crate::settings");
    assert!(
        hits.is_empty(),
        "stage modules must not name the whole config (ARCHITECTURE.md, Dependency rules):\n{}",
        hits.join("\n")
    );
}
