//! `audit verify`: checks a SIEM export against the audit stamps (see `crate::audit`).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum AuditCmd {
    /// Read an NDJSON export (Splunk `{"result":...}` lines, Elasticsearch hits or plain events)
    /// and report per agent the missing sequence numbers, duplicates and which gaps heartbeats
    /// explain. Exit 1 if a gap is unexplained, 2 if the file cannot be read.
    Verify {
        /// The export file (`-` for stdin).
        file: PathBuf,
    },
}

/// Exit 0 when every gap is explained, 1 if one is not (or nothing was found), 2 if the export
/// cannot be read.
pub(super) fn audit_cmd(action: AuditCmd) -> ExitCode {
    let AuditCmd::Verify { file } = action;
    let text = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    } else {
        std::fs::read(&file).map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    match text {
        Ok(text) => {
            let report = crate::audit::verify::verify(&text);
            print!("{}", crate::audit::verify::render(&report));
            let ok = report.unexplained() == 0 && !report.agents.is_empty();
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("{}: cannot read the export: {e}; check the path", file.display());
            ExitCode::from(2)
        }
    }
}
