//! Build details for `--version`, `/status` and `sendauth_siem_build_info`: the git commit the
//! binary was built from (or `unknown` outside a git checkout, e.g. from a source tarball) and
//! the target triple.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SENDAUTH_SIEM_COMMIT={commit}");
    println!(
        "cargo:rustc-env=SENDAUTH_SIEM_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=SENDAUTH_SIEM_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    // Rebuild when HEAD moves (a commit or a checkout), not on every edit.
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])) {
        println!("cargo:rerun-if-changed={r}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
