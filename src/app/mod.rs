//! The dispatch: the parsed command line ([`crate::cli`]) turned into settings inputs
//! (`flags`), checked by [`crate::settings`] (or, for `run`, merged with the jobs file by
//! [`crate::jobs`]), then handed to the pipeline, the jobs runner, the check or the sandbox,
//! and the outcome printed by [`crate::output`]. The only module that reads clap types.

mod flags;
mod sandbox;

use clap::CommandFactory;

use crate::cli::{CheckTarget, Cli, Command, ExportTarget, SchemaTarget};
use crate::error::{Error, Result};
use crate::pipeline::{self, Stopped};
use crate::settings::{self, ExportSettings, ExportSource, Flags};
use crate::signals::Signal;
use crate::{check, inspect, jobs, output, session};

/// Runs the parsed command line.
///
/// An export catches SIGINT and SIGTERM from before its destination is opened: it stops,
/// leaves the destination as it was and fails with [`Error::Interrupted`], whose exit code is
/// 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
pub async fn run(cli: Cli) -> Result<()> {
    let interrupt = match &cli.command {
        Command::Export { .. } => Some(Signal::listen()?),
        Command::Run(args) if !args.check => Some(Signal::listen()?),
        _ => None,
    };
    let api = || flags::api(&cli.connection);
    match &cli.command {
        Command::Reports { json, fields } => {
            let fields = settings::reports::report_fields(&Flags, &flags::report_fields(fields))?;
            let api = api()?;
            let rows = with_progress(session::list_reports(&api, &fields))
                .await?
                .requests;
            if *json {
                output::print_reports_json(&rows)
            } else {
                output::print_reports_table(&rows)
            }
        }
        Command::Schema {
            target: SchemaTarget::Report { id, transforms },
        } => {
            let id = settings::reports::report_ids(&Flags, std::slice::from_ref(id))?;
            let transforms = flags::checked_transforms(transforms)?;
            let api = api()?;
            let schema = with_progress(pipeline::report_schema(&api, &id[0], transforms)).await?;
            output::print_schema(&schema)
        }
        Command::Schema {
            target:
                SchemaTarget::Url {
                    endpoint,
                    transforms,
                },
        } => {
            let spec = flags::endpoint_spec(endpoint)?;
            let transforms = flags::checked_transforms(transforms)?;
            let api = api()?;
            let schema = pipeline::endpoint_schema(&api, &spec, transforms).await?;
            output::print_schema(&schema)
        }
        Command::Export { target } => {
            let (source, transforms, output) = match target {
                ExportTarget::Report {
                    ids,
                    transforms,
                    output,
                } => (
                    ExportSource::CompletedReports(settings::reports::report_ids(&Flags, ids)?),
                    transforms,
                    output,
                ),
                ExportTarget::Reports { transforms, output } => {
                    (ExportSource::ReportList, transforms, output)
                }
                ExportTarget::Url {
                    endpoint,
                    transforms,
                    output,
                } => {
                    let spec = flags::endpoint_spec(endpoint)?;
                    (ExportSource::Endpoint(Box::new(spec)), transforms, output)
                }
            };
            let transforms = flags::checked_transforms(transforms)?;
            let concurrency = settings::check(
                &Flags,
                settings::field::CONCURRENCY,
                output.concurrency,
                settings::output::concurrency,
            )?;
            let api = api()?;
            let output = settings::output::output(&Flags, &flags::output(output))?;
            let settings = ExportSettings {
                api,
                source,
                output,
                transforms,
                concurrency,
            };
            let interrupt = interrupt
                .ok_or_else(|| Error::Internal("no signal handler for the export".into()))?;
            match with_progress(pipeline::export_until(&settings, interrupt)).await {
                Ok(summary) => {
                    output::print_export_summary(&summary, settings.output.destination.display())
                }
                Err(Stopped::Failed(e)) => Err(e),
                Err(Stopped::Interrupted(signal)) => Err(signal.into()),
            }
        }
        Command::Check { target } => {
            let (source, transforms, out) = match target {
                CheckTarget::Report {
                    id,
                    transforms,
                    out,
                } => (
                    ExportSource::CompletedReports(settings::reports::report_ids(
                        &Flags,
                        std::slice::from_ref(id),
                    )?),
                    transforms,
                    out,
                ),
                CheckTarget::Url {
                    endpoint,
                    transforms,
                    out,
                } => {
                    let spec = flags::endpoint_spec(endpoint)?;
                    (ExportSource::Endpoint(Box::new(spec)), transforms, out)
                }
            };
            let transforms = flags::checked_transforms(transforms)?;
            let print = |report: check::Report<'_>| output::write_stdout(&report.text());
            check::check(&api()?, &source, &transforms, out.as_deref(), print).await
        }
        Command::Inspect { dest, json } => {
            let inspection = inspect::inspect(dest).await?;
            if *json {
                output::print_inspection_json(&inspection)?;
            } else {
                output::print_inspection(&inspection)?;
            }
            inspection.verdict()
        }
        Command::Run(args) => {
            let settings = jobs::RunSettings::new(flags::run(args, &cli.connection))?;
            if args.check {
                let print = |report: check::Report<'_>| output::write_stdout(&report.text());
                return check::jobs(&settings, print).await;
            }
            let interrupt =
                interrupt.ok_or_else(|| Error::Internal("no signal handler for the run".into()))?;
            let summary = with_progress(jobs::run(&settings, interrupt)).await?;
            output::write_stdout(&summary.table())?;
            if let Some(path) = &settings.summary_json {
                jobs::summary::write_json(path, &summary)?;
            }
            summary.result()
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "kargo-export", &mut script);
            output::write_stdout(&String::from_utf8_lossy(&script))
        }
        Command::Man => output::write_stdout(&man_page()?),
        Command::Sandbox(args) => {
            let (addr, options) = sandbox::options(args)?;
            sandbox::serve(addr, options).await
        }
    }
}

/// The man page (roff) from the clap definitions, so it never drifts from `--help`: the top
/// command's page, with every command, nested ones included, listed at its end.
fn man_page() -> Result<String> {
    let command = Cli::command();
    let mut commands = String::from("Every command:\n");
    list_commands(&command, "kargo-export", &mut commands);
    let after = match command.get_after_long_help().or(command.get_after_help()) {
        Some(text) => format!("{text}\n\n{commands}"),
        None => commands,
    };
    let mut page = Vec::new();
    clap_mangen::Man::new(command.after_long_help(after))
        .render(&mut page)
        .map_err(|e| Error::io("the man page", e))?;
    Ok(String::from_utf8_lossy(&page).into_owned())
}

/// `  kargo-export export report: <about>` for every subcommand below `command`.
fn list_commands(command: &clap::Command, path: &str, out: &mut String) {
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let path = format!("{path} {}", sub.get_name());
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        out.push_str(&format!("  {path}: {about}\n"));
        list_commands(sub, &path, out);
    }
}

/// Runs `work` with progress drawn on a terminal, cleared before anything is printed.
async fn with_progress<T>(work: impl std::future::Future<Output = T>) -> T {
    let _progress = crate::progress::start();
    work.await
}
