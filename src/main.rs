//! The binary: parse the command line, set up logging and the runtime, run, and turn the
//! result into one `error:` line on stderr and an exit code (0 ok, 1 failure, 2 usage).

use std::process::ExitCode;

use clap::Parser;
use kargo_export::app;
use kargo_export::cli::{Cli, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: clap prints them to stdout.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&usage_message(&e), 2),
    };
    init_logging(cli.verbose, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}"), 1),
    };
    match runtime.block_on(app::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string(), e.exit_code()),
    }
}

/// clap's multi-line usage error as one line: the message without its `Usage:` block.
fn usage_message(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.starts_with("Usage:"))
        .filter(|line| !line.trim_start().starts_with("tip:"))
        .filter(|line| !line.starts_with("For more information"))
        .collect();
    let message = message.join(" ");
    let message = message.trim().trim_start_matches("error:").trim();
    format!("{message} (see --help)")
}

/// Prints the single `error:` line (folded onto one line) and returns the exit code.
fn fail(message: &str, code: u8) -> ExitCode {
    let one_line: Vec<&str> = message.split_whitespace().collect();
    eprintln!("error: {}", one_line.join(" "));
    ExitCode::from(code)
}

/// Keeps glibc from returning and re-mapping page-sized buffers on every page: each page's body,
/// batch and builders (a few MiB) would otherwise come from fresh mmaps whose page faults cost
/// about 10% of an export's time. Freed memory above 64 MiB is still given back.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// Logs go to stderr: warnings by default, more with -v, RUST_LOG overrides; as text, or as
/// one JSON object a line with `--log-format json`.
fn init_logging(verbose: u8, format: LogFormat) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(kargo_export::progress::LogWriter);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
}
