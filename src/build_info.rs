//! What this binary is: version, the git commit it was built from and its target (set by
//! `build.rs`). Shown by `--version`, in `/status` and as `sendauth_siem_build_info`.

/// The crate version, e.g. `0.1.0`.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit (12 hex digits), or `unknown` when built outside a git checkout.
pub(crate) const COMMIT: &str = env!("SENDAUTH_SIEM_COMMIT");
/// The target triple, e.g. `x86_64-unknown-linux-gnu`.
pub(crate) const TARGET: &str = env!("SENDAUTH_SIEM_TARGET");

/// `--version`'s long form.
pub(crate) const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit:  ",
    env!("SENDAUTH_SIEM_COMMIT"),
    "\ntarget:  ",
    env!("SENDAUTH_SIEM_TARGET"),
    "\nprofile: ",
    env!("SENDAUTH_SIEM_PROFILE"),
);
